"""`migrator runtime run/console/stop/list/status` boot what `migrator convert --output-dir` wrote, on this machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.guest_layout import (
    TIMEOUT,
    VMWARE_MAC,
    converted_from_vmware,
    leftovers,
    wait_for_text,
    wait_gone,
    write_layout,
)

pytest.importorskip("libvirt")
pytestmark = pytest.mark.slow
MIGRATOR = str(Path(sys.executable).parent / "migrator")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A runtime dir of the test's own; whatever it started is stopped and checked gone afterwards."""
    environment = dict(os.environ, MIGRATOR_RUNTIME_DIR=str(tmp_path / "rt"))
    yield environment
    names = [path.name for path in (tmp_path / "rt").iterdir()] if (tmp_path / "rt").exists() else []
    for name in names:
        subprocess.run([MIGRATOR, "runtime", "stop", name], env=environment, capture_output=True, check=False)
    for name in names:
        assert wait_gone(name) == []


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_run_streams_the_console_and_exits_0_when_the_guest_powers_off(tmp_path: Path, env: dict[str, str]) -> None:
    """The acceptance: `migrator runtime run DIR`, DIR written by `migrator convert --output-dir` from a VMware VM."""
    name = unique("local-poweroff")
    out = converted_from_vmware(tmp_path, name, "poweroff")
    done = subprocess.run(
        [MIGRATOR, "runtime", "run", str(out)], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    assert "MIGRATOR-GUEST-READY" in done.stdout
    assert "DISK vda " in done.stdout
    assert f"NIC eth0 {VMWARE_MAC}" in done.stdout
    assert "MIGRATOR-GUEST-POWEROFF" in done.stdout
    assert "accelerator" in done.stderr  # stdout is the console alone
    assert leftovers(name) == []
    status = subprocess.run([MIGRATOR, "runtime", "status", name], env=env, capture_output=True, text=True)
    assert json.loads(status.stdout)["phase"] == "Succeeded"


def test_ctrl_c_shuts_the_guest_down_cleanly(tmp_path: Path, env: dict[str, str]) -> None:
    name = unique("local-ctrlc")
    from testbed.guestimage import build_guest

    out = write_layout(tmp_path / "out", name, build_guest(tmp_path / "guest", behaviour="wait").raw)
    vm_file = out / f"{name}-vm.yaml"  # a VM YAML works as well as its directory
    process = subprocess.Popen(
        [MIGRATOR, "runtime", "run", str(vm_file)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    seen = b""
    deadline = time.monotonic() + TIMEOUT
    assert process.stdout is not None
    while b"END-OF-DEVICES" not in seen and time.monotonic() < deadline:
        seen += os.read(process.stdout.fileno(), 4096)
    assert b"MIGRATOR-GUEST-READY" in seen
    process.send_signal(signal.SIGINT)
    rest, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, stderr
    assert b"MIGRATOR-GUEST-SHUTDOWN" in seen + rest
    assert leftovers(name) == []


def test_detach_console_status_list_and_stop(tmp_path: Path, env: dict[str, str]) -> None:
    name = unique("local-detach")
    from testbed.guestimage import build_guest

    out = write_layout(tmp_path / "out", name, build_guest(tmp_path / "guest", behaviour="wait").raw)
    started = subprocess.run(
        [MIGRATOR, "runtime", "run", "--detach", str(out)], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert started.returncode == 0, started.stderr
    assert leftovers(name)  # it runs in the background

    status = json.loads(subprocess.run([MIGRATOR, "runtime", "status", name], env=env, capture_output=True).stdout)
    assert status["phase"] == "Running"
    assert status["interfaces"] == [{"name": "default", "mac": VMWARE_MAC}]
    listed = subprocess.run([MIGRATOR, "runtime", "list", "--json"], env=env, capture_output=True).stdout
    assert [entry["name"] for entry in json.loads(listed)] == [name]

    console = subprocess.Popen([MIGRATOR, "runtime", "console", name], env=env, stdout=subprocess.PIPE)
    seen = b""
    deadline = time.monotonic() + TIMEOUT
    assert console.stdout is not None
    while b"END-OF-DEVICES" not in seen and time.monotonic() < deadline:
        seen += os.read(console.stdout.fileno(), 4096)
    assert b"MIGRATOR-GUEST-READY" in seen and f"NIC eth0 {VMWARE_MAC}".encode() in seen

    stopped = subprocess.run(
        [MIGRATOR, "runtime", "stop", name], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert stopped.returncode == 0, stopped.stderr
    assert "guest shut down" in stopped.stdout
    # said before the wait, which a guest that ignores ACPI makes as long as its whole grace period
    assert (
        stopped.stderr
        == f"{name}: ACPI shutdown sent; the guest is destroyed after its 60s grace period if it has not stopped\n"
    )
    rest, _ = console.communicate(timeout=30)  # the console ends when the guest stops
    assert console.returncode == 0
    assert b"MIGRATOR-GUEST-SHUTDOWN" in seen + rest
    assert leftovers(name) == []


def test_a_crash_is_reported_with_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    name = unique("local-crash")
    from testbed.guestimage import build_guest

    out = write_layout(tmp_path / "out", name, build_guest(tmp_path / "guest", behaviour="crash").raw)
    done = subprocess.run(
        [MIGRATOR, "runtime", "run", str(out)], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"error: {name}: guest panicked"
    assert "MIGRATOR-GUEST-CRASH" in done.stdout


@pytest.mark.parametrize("layout", ["missing", "empty", "two-vms", "no-disk"])
def test_bad_directories_fail_with_one_line(tmp_path: Path, env: dict[str, str], layout: str) -> None:
    out = tmp_path / "out"
    if layout != "missing":
        out.mkdir()
    if layout in ("two-vms", "no-disk"):
        import yaml

        from tests.runtime.guest_layout import vm_manifest

        (out / "a-vm.yaml").write_text(yaml.safe_dump(vm_manifest("a", "a-disk0")))
        if layout == "two-vms":
            (out / "b-vm.yaml").write_text(yaml.safe_dump(vm_manifest("b", "b-disk0")))
    done = subprocess.run([MIGRATOR, "runtime", "run", str(out)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    expected = {
        "missing": "no such directory",
        "empty": "no VirtualMachine YAML",
        "two-vms": "more than one VirtualMachine",
        "no-disk": "no disk image",
    }[layout]
    assert expected in lines[0]


def test_two_detached_runs_of_one_vm_at_once_start_one_guest(tmp_path: Path, env: dict[str, str]) -> None:
    """Issue 12: the second `run --detach` of a name gets one line and a non-zero exit; the first guest stays
    managed (list says Running, stop stops it, nothing is left)."""
    name = unique("local-twice")
    from testbed.guestimage import build_guest

    out = write_layout(tmp_path / "out", name, build_guest(tmp_path / "guest", behaviour="wait").raw)
    runs = [
        subprocess.Popen(
            [MIGRATOR, "runtime", "run", "--detach", str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(run.wait(TIMEOUT), run.communicate()[1]) for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results
    refused = next(stderr for code, stderr in results if code != 0).strip().splitlines()
    assert len(refused) == 1 and "already running" in refused[0], refused
    listed = json.loads(subprocess.run([MIGRATOR, "runtime", "list", "--json"], env=env, capture_output=True).stdout)
    assert [(entry["name"], entry["phase"]) for entry in listed] == [(name, "Running")]
    again = subprocess.run([MIGRATOR, "runtime", "run", "--detach", str(out)], env=env, capture_output=True, text=True)
    assert again.returncode != 0 and "already running" in again.stderr
    # `run --detach` returns once the domain exists: a power button pressed while the guest still boots is lost
    # and the stop waits out the whole 60 s grace. The guest listens for it before it prints its marker.
    wait_for_text(Path(env["MIGRATOR_RUNTIME_DIR"]) / name / "console.log", "MIGRATOR-GUEST-READY")
    stopped = subprocess.run(
        [MIGRATOR, "runtime", "stop", name], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert stopped.returncode == 0, stopped.stderr
    assert "guest shut down" in stopped.stdout  # by the power button, not destroyed after the grace
    assert leftovers(name) == []


def test_a_binary_file_is_refused_with_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    """Issue 12: not "internal error: UnicodeDecodeError"."""
    binary = tmp_path / "vm.yaml"
    binary.write_bytes(bytes(range(256)) * 8)
    done = subprocess.run([MIGRATOR, "runtime", "run", str(binary)], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {binary}: not a VirtualMachine YAML (not UTF-8 text)"]
