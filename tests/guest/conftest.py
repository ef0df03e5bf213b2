"""The VMware-shaped Debian guest, converted once for every test that only reads it.

``converted`` runs the Acceptance command (``migrator convert --source vmx:DIR/guest.vmx``) once per
session, first killed with SIGKILL while virt-v2v runs (the NIC names are already pinned in the
overlay by then), then again to completion; tests boot copy-on-write overlays of its image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.wait import wait_until
from testbed.debian_guest import DebianGuest, build_debian_guest, write_vmx
from tests.faults import kill_at_v2v_phase_env

MIGRATOR = Path(sys.executable).parent / "migrator"
VM = "debian12-vmware"
CLAIM = f"{VM}-disk-0"


def guest_env(base: Path, **extra: str) -> dict[str, str]:
    """A user's environment: guest conversion on (the suite's default skips it), our own runtime dir."""
    env = {k: v for k, v in os.environ.items() if k not in ("MIGRATOR_SKIP_CONVERSION", "MIGRATOR_VSPHERE_PASSWORD")}
    env["MIGRATOR_RUNTIME_DIR"] = str(base / "runtime")
    env["MIGRATOR_STATE_DIR"] = str(base / "state")
    env.update(extra)
    return env


def migrator(*args: str, env: dict[str, str], timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MIGRATOR), *args], capture_output=True, text=True, env=env, timeout=timeout)


@dataclass
class Converted:
    base: Path
    out: Path
    killed: subprocess.CompletedProcess[str]
    images_after_kill: dict[str, tuple[int, int]]  # image → (size, mtime_ns) right after the kill
    images_before_kill: dict[str, tuple[int, int]]
    state_after_kill: str
    lingering_after_kill: list[str]  # command lines still naming the output a minute after the kill
    lingering_after_rerun: list[str]  # and once the re-run has finished
    finished: subprocess.CompletedProcess[str]


def processes_naming(path: Path) -> list[str]:
    """The command lines of running processes that name ``path`` (virt-v2v, qemu-nbd, nbdkit, qemu)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(cmdline.strip())
    return found


def stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@pytest.fixture(scope="session")
def debian_guest() -> DebianGuest:
    return build_debian_guest()  # cached per machine; minutes the first time


@pytest.fixture(scope="session")
def guest_vmx(debian_guest: DebianGuest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_vmx(debian_guest, tmp_path_factory.mktemp("vmware") / "vm", VM)


@pytest.fixture(scope="session")
def converted(guest_vmx: Path, tmp_path_factory: pytest.TempPathFactory) -> Converted:
    base = tmp_path_factory.mktemp("converted")
    out = base / "out"
    args = ("convert", "--source", f"vmx:{guest_vmx}", "--vm", VM, "--output-dir", str(out))
    # 1. killed -9 once virt-v2v has started (after the transfer and the NIC pinning wrote to the overlay)
    image = out / f"{CLAIM}.img"
    env = guest_env(base, **kill_at_v2v_phase_env("Opening the source"))
    process = subprocess.Popen(
        [str(MIGRATOR), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    before: dict[str, tuple[int, int]] = {}
    while process.poll() is None:  # the image's stamp once the transfer has finished it
        if (out / ".migrator" / f"guest-{VM}.json").exists() and image.exists() and not before:
            before = {image.name: stamp(image)}
        time.sleep(0.2)
    stdout, stderr = process.communicate()
    killed = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    after = {image.name: stamp(image)}
    state = (out / ".migrator" / f"guest-{VM}.json").read_text()
    # virt-v2v dies with us and stops its appliance; the qemu-nbd it started may outlive it (virt-v2v does
    # not tie it to its life), and the re-run stops it before it converts again
    gone = wait_until(lambda: not [c for c in processes_naming(out) if "virt-v2v" in c], timeout=60, interval=0.5)
    lingering = [] if gone else processes_naming(out)
    # 2. the same command again: it must start over from the untouched image
    finished = migrator(*args, env=guest_env(base))
    assert finished.returncode == 0, finished.stderr
    return Converted(base, out, killed, after, before, state, lingering, processes_naming(out), finished)


@pytest.fixture
def booted_copy(converted: Converted, tmp_path: Path) -> Path:
    """An output directory whose image is a copy-on-write overlay of the shared converted image."""
    out = tmp_path / "out"
    out.mkdir()
    for manifest in converted.out.glob("*.yaml"):
        shutil.copy(manifest, out / manifest.name)
    overlay = out / f"{CLAIM}.qcow2"
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            str(converted.out / f"{CLAIM}.img"),
            str(overlay),
        ],
        check=True,
    )
    return out
