"""An estate on the vSphere simulator: each VM given the tiny real guest as its VMware disk, driven
through the real CLI (subprocesses) with its own state and runtime directories."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyVmomi import vim

from core.wait import wait_until
from migrator import simulator
from migrator.simulator import seed
from migrator.sources.vsphere.operations import wait_for_task
from testbed.demo import seed_guest_vm
from tests.e2e import MigratorRun

MARKER = "MIGRATOR-GUEST-READY"


def target_name(vm: str) -> str:
    return vm.lower().replace("_", "-")


@dataclass
class Estate(MigratorRun):
    vms: list[str]

    @property
    def plan_file(self) -> Path:
        return self.base / "plan.yaml"

    def plan(self, *extra: str) -> None:
        made = self.migrator(
            "plan", "--source", self.sim.source_url(), "--insecure", "--output-file", str(self.plan_file), *extra
        )
        assert made.returncode == 0, made.stdout + made.stderr

    def migrate_args(self, *extra: str) -> list[str]:
        return ["migrate", "--plan", str(self.plan_file), "--insecure", "--output-dir", str(self.out), *extra]

    def status(self) -> list[dict[str, Any]]:
        result = self.migrator("status", "-o", "json")
        assert result.returncode == 0, result.stderr
        reports: list[dict[str, Any]] = json.loads(result.stdout)
        return reports

    def power_state(self, vm: str) -> str:
        with seed.session(self.sim) as source:
            return source.power_state(vm)

    def image(self, vm: str) -> Path:
        return self.out / f"{target_name(vm)}-disk-0.img"

    def launcher_pid(self, vm: str) -> str | None:
        path = self.runtime_dir / target_name(vm) / "launcher.pid"
        return path.read_text().strip() if path.exists() else None

    def stop_targets(self) -> None:
        """Clean-up only: kill each launcher; its transient domain dies with its libvirt connection.

        (An ACPI shutdown of four TCG guests at once, one after the other, took three minutes a test.)"""

        def launcher(pid: int) -> bool:  # a stale pid file must not kill whatever reused the number
            with contextlib.suppress(OSError):
                return b"runtime.launcher" in Path(f"/proc/{pid}/cmdline").read_bytes()
            return False

        pids = [int(pid) for pid in (self.launcher_pid(vm) for vm in self.vms) if pid and launcher(int(pid))]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids) or None, timeout=30, interval=0.2)


PREFIX = "e"  # the local runtime's libvirt domains are named after the VMs: ours are told apart


def seed_estate(sim: simulator.Simulator, base: Path, vms: list[str], vmdk: list[Path]) -> Estate:
    """Rename each of vcsim's ``vms`` to ``e<run>-<name>`` and give it the guest's disk; the new names.

    ``<run>`` (4 hex digits) is new each time: the system libvirtd is shared by every worktree's tests on the
    machine, and two runs of these tests at once must not both start a domain named after vcsim's ``DC0_H0_VM0``.
    Short: the runtime's sockets live under a directory named after the VM (AF_UNIX paths are short)."""
    names = []
    prefix = f"{PREFIX}{uuid.uuid4().hex[:4]}-"
    with seed.session(sim) as source:
        for vm in vms:
            found = source.find_vm(vm)
            wait_for_task(found.Rename_Task(newName=prefix + vm), f"rename {vm}")
            # vcsim's BIOS UUIDs are the same in every simulator: the guest's libvirt domain UUID comes
            # from it, and other test runs on this machine boot vcsim's VMs too
            wait_for_task(found.ReconfigVM_Task(spec=vim.vm.ConfigSpec(uuid=str(uuid.uuid4()))), f"uuid of {vm}")
            names.append(prefix + vm)
    for index, vm in enumerate(names):
        seed_guest_vm(sim, vm, vmdk, mac=f"00:50:56:3e:15:{index:02x}")
    return Estate(sim, base, names)


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def images_equal(source: Path, image: Path) -> bool:
    compare = subprocess.run(["qemu-img", "compare", str(source), str(image)], capture_output=True, text=True)
    return compare.returncode == 0
