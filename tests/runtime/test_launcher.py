"""The launcher runs the real test guest on libvirt/QEMU: console, API, SIGTERM, crash, exit statuses.

Each test leaves no domain and no QEMU process behind (checked). Boots are few: TCG on two
shared cores takes ~5-10 s per boot.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from core.wait import wait_until
from runtime.launcher import api
from tests.runtime.guest_layout import TIMEOUT, VMWARE_MAC, leftovers, wait_for_text, wait_gone, write_layout

pytest.importorskip("libvirt")
pytestmark = pytest.mark.slow
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def libvirtd() -> None:
    from runtime.launcher.libvirtd import ensure_libvirtd

    ensure_libvirtd()


def guest(tmp_path: Path, behaviour: str, firmware: str = "bios") -> Path:
    from testbed.guestimage import build_guest

    return build_guest(tmp_path / "guest", firmware=firmware, behaviour=behaviour).raw


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


class Running:
    def __init__(self, process: subprocess.Popen[str], state: Path, name: str) -> None:
        self.process, self.state, self.name = process, state, name

    def wait(self, timeout: float = TIMEOUT) -> tuple[int, str]:
        _, stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode, stderr


@pytest.fixture
def launch(tmp_path: Path) -> Iterator:
    started: list[Running] = []

    def start(vm_dir: Path, name: str, *extra: str, env: dict[str, str] | None = None) -> Running:
        state = tmp_path / "state" / name
        vmi = ["--vmi", str(vm_dir / f"{name}-vm.yaml")] if (vm_dir / f"{name}-vm.yaml").exists() else []
        command = [sys.executable, "-m", "runtime.launcher", *vmi, "--disk-root", str(vm_dir)]
        command += ["--state-dir", str(state), "--accel", "auto", *extra]
        process = subprocess.Popen(
            command, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        running = Running(process, state, name)
        started.append(running)
        return running

    yield start
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()
        assert wait_gone(running.name) == [], "domain or QEMU left behind"


def status(state: Path) -> dict:
    return api.request(state / "launcher.sock", "GET", "/status")


def wait_api(running: Running) -> dict:
    def serving() -> dict | None:
        if running.process.poll() is not None:
            raise AssertionError(f"launcher exited {running.process.returncode}: {running.process.stderr.read()}")
        if (running.state / "launcher.sock").exists():
            current = status(running.state)
            if current["phase"] != "Scheduled":  # Scheduled: the launcher serves before the domain exists
                return current
        return None

    current = wait_until(serving, timeout=TIMEOUT, interval=0.1)
    if current is None:
        raise AssertionError("the launcher never served its API")
    return current


def test_guest_boots_reports_and_shuts_down_cleanly_on_sigterm(tmp_path: Path, launch) -> None:
    name = unique("launch-bios")
    vm_dir = write_layout(tmp_path / "out", name, guest(tmp_path, "wait"))
    running = launch(vm_dir, name)
    first = wait_api(running)
    assert first["phase"] == "Running"
    assert first["accelerator"]["kind"] in ("kvm", "tcg") and first["accelerator"]["reason"]
    assert first["interfaces"] == [{"name": "default", "mac": VMWARE_MAC}]
    assert first["started_at"].endswith("Z")

    console = wait_for_text(running.state / "console.log", "END-OF-DEVICES")
    assert "MIGRATOR-GUEST-READY" in console
    assert "DISK vda " in console
    assert f"NIC eth0 {VMWARE_MAC}" in console  # the MAC from vSphere survived

    # every console client gets the stream from the first line
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(running.state / "console.sock"))
        client.settimeout(10)
        received = b""
        while b"END-OF-DEVICES" not in received:
            received += client.recv(4096)
        assert b"MIGRATOR-GUEST-READY" in received

    assert api.request(running.state / "launcher.sock", "POST", "/pause")["phase"] == "Paused"
    assert status(running.state)["domain_state"] == "paused"
    assert api.request(running.state / "launcher.sock", "POST", "/unpause")["phase"] == "Running"

    running.process.send_signal(signal.SIGTERM)
    code, stderr = running.wait()
    assert code == 0, stderr
    assert "MIGRATOR-GUEST-SHUTDOWN" in (running.state / "console.log").read_text(errors="replace")
    assert "accelerator: " in stderr
    assert json.loads((running.state / "result.json").read_text())["phase"] == "Succeeded"
    assert not (running.state / "launcher.sock").exists() and not (running.state / "console.sock").exists()
    assert leftovers(name) == []


def test_efi_guest_with_a_forwarded_port_shuts_down_through_the_api(tmp_path: Path, launch) -> None:
    name = unique("launch-api")
    vm_dir = write_layout(tmp_path / "out", name, guest(tmp_path, "wait", firmware="efi"), efi=True)
    # a pod-network port: forwarded from the host (slirp hostfwd) to the guest
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    vm_file = vm_dir / f"{name}-vm.yaml"
    manifest = yaml.safe_load(vm_file.read_text())
    manifest["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][0]["ports"] = [{"port": port}]
    vm_file.write_text(yaml.safe_dump(manifest))
    running = launch(vm_dir, name)
    wait_api(running)
    console = wait_for_text(running.state / "console.log", "END-OF-DEVICES")
    assert "MIGRATOR-GUEST-READY" in console and f"NIC eth0 {VMWARE_MAC}" in console
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        pass  # QEMU listens on the forwarded port
    assert (running.state / "nvram.fd").stat().st_size > 0  # the per-VM UEFI variable store
    api.request(running.state / "launcher.sock", "POST", "/shutdown")
    code, stderr = running.wait()
    assert code == 0, stderr
    assert "MIGRATOR-GUEST-SHUTDOWN" in (running.state / "console.log").read_text(errors="replace")


def test_crashing_guest_exits_2(tmp_path: Path, launch) -> None:
    name = unique("launch-crash")
    vm_dir = write_layout(tmp_path / "out", name, guest(tmp_path, "crash"))
    running = launch(vm_dir, name)
    code, stderr = running.wait()
    assert code == 2, stderr
    assert "MIGRATOR-GUEST-CRASH" in (running.state / "console.log").read_text(errors="replace")
    result = json.loads((running.state / "result.json").read_text())
    assert result == {"exit_status": 2, "phase": "Failed", "reason": "guest panicked"}


def blank_disk_vmi(tmp_path: Path, name: str, grace: int) -> tuple[Path, dict]:
    """A VMI whose disk holds no OS (SeaBIOS keeps looking for one): it ignores ACPI, boots instantly."""
    disks = tmp_path / "disks"
    (disks / "rootdisk").mkdir(parents=True)
    with (disks / "rootdisk" / "disk.img").open("wb") as image:  # the KubeVirt pod layout <volume>/disk.img
        image.truncate(1 << 20)
    vmi = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": grace,
            "domain": {"memory": {"guest": "64Mi"}, "devices": {"disks": [{"name": "rootdisk", "disk": {}}]}},
            "volumes": [{"name": "rootdisk", "persistentVolumeClaim": {"claimName": "not-this-name"}}],
        },
    }
    return disks, vmi


def test_grace_period_then_destroy_exits_3(tmp_path: Path, launch) -> None:
    name = unique("launch-grace")
    disks, vmi = blank_disk_vmi(tmp_path, name, grace=2)
    env = dict(os.environ, MIGRATOR_VMI_JSON=json.dumps(vmi))
    running = launch(disks, name, env=env)
    first = wait_api(running)
    assert first["phase"] == "Running"
    assert [nic["name"] for nic in first["interfaces"]] == ["default"]  # KubeVirt's default pod NIC
    assert first["interfaces"][0]["mac"].startswith("52:54:00:")  # libvirt's, as the spec gave none
    started = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    code, stderr = running.wait()
    assert code == 3, stderr
    assert time.monotonic() - started >= 2
    assert "did not shut down within 2s" in stderr


def test_no_orphan_when_the_launcher_is_killed(tmp_path: Path, launch) -> None:
    name = unique("launch-kill9")
    disks, vmi = blank_disk_vmi(tmp_path, name, grace=30)
    (tmp_path / "vmi.yaml").write_text(yaml.safe_dump(vmi))
    running = launch(disks, name, "--vmi", str(tmp_path / "vmi.yaml"))
    wait_api(running)
    assert leftovers(name)  # running
    running.process.kill()  # SIGKILL: no cleanup code runs; libvirt's auto-destroy does it
    running.process.wait()
    assert wait_gone(name) == []


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing-disk", "no disk image"),
        ("gpu", "spec.domain.devices.gpus: not supported by this runtime"),
        ("not-a-vm", "not a VirtualMachine or VirtualMachineInstance"),
    ],
)
def test_failing_to_start_exits_1_with_one_line(tmp_path: Path, launch, breakage: str, message: str) -> None:
    name = unique("launch-bad")
    vm_dir = tmp_path / "out"
    vm_dir.mkdir()
    manifest = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "domain": {"memory": {"guest": "64Mi"}, "devices": {"disks": [{"name": "d", "disk": {}}]}},
                    "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}],
                }
            }
        },
    }
    if breakage != "missing-disk":
        (vm_dir / "c.img").write_bytes(b"\0" * 512)
    if breakage == "gpu":
        manifest["spec"]["template"]["spec"]["domain"]["devices"]["gpus"] = [{"name": "g", "deviceName": "x"}]
    if breakage == "not-a-vm":
        manifest = {"kind": "ConfigMap", "metadata": {"name": name}}
    (vm_dir / f"{name}-vm.yaml").write_text(yaml.safe_dump(manifest))
    running = launch(vm_dir, name)
    code, stderr = running.wait()
    assert code == 1
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert message in lines[-1]


def test_reaper_adopts_and_reaps_the_daemons_orphans() -> None:
    """libvirtd runs under the reaper: a daemonized child (as QEMU is) is adopted and reaped, not left a zombie."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "runtime.launcher.reaper", "sh", "-c", "(sleep 0.5 &); exit 7"],
        cwd=PROJECT,
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 7  # the daemon's own status
    assert time.monotonic() - started >= 0.5  # it waited for the orphan it adopted
