"""`make demo`: a whole migration on this machine, run through the real CLI as a user would.

vCenter simulator → a VM whose datastore holds the tiny real guest as a VMware disk →
``migrator plan`` → ``migrator cutover`` onto the local runtime → the guest's console →
``migrator status`` → stop everything. State and runtime dirs live under ``demo-out/`` so
the demo can run again and again.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pyVmomi import vim

from core.errors import MigratorError
from migrator import simulator
from migrator.simulator import seed
from migrator.sources.vsphere.operations import wait_for_task

DEMO_VM = "DC0_H0_VM0"
DEMO_MAC = "00:50:56:3f:12:34"  # VMware's manually assigned range: the MAC the guest must keep
MARKER = "MIGRATOR-GUEST-READY"
GUEST_MEMORY_MIB = 256  # vcsim's VMs have 32 MiB: too little for the guest's kernel and initramfs


class DemoFailed(Exception):
    pass


def seed_guest_vm(
    sim: simulator.Simulator, vm_name: str, vmdk_files: list[Path], *, mac: str, memory_mib: int = GUEST_MEMORY_MIB
) -> str:
    """Give ``vm_name`` the guest's VMDK as its first disk, ``mac`` on its first NIC, and room to boot."""
    backing = seed.attach_disk_image(sim, vm_name, vmdk_files, mac=mac)
    with seed.session(sim) as source:
        vm = source.find_vm(vm_name)
        task = vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(memoryMB=memory_mib))
        wait_for_task(task, f"set the memory of {vm_name}")
    return backing


def _migrator() -> list[str]:
    """The installed `migrator` script beside this Python (what a user runs)."""
    script = Path(sys.executable).parent / "migrator"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from migrator.cli import main; main()"]


def _run(args: list[str], env: dict[str, str], *, show: bool = True) -> subprocess.CompletedProcess[str]:
    print(f"\n$ migrator {shlex.join(args)}", flush=True)
    started = time.monotonic()
    if show:  # both streams as one, in the order the command wrote them (a terminal's view)
        result = subprocess.run(
            [*_migrator(), *args], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        sys.stdout.write(result.stdout)
    else:  # the output is parsed: only what went to stderr is shown
        result = subprocess.run([*_migrator(), *args], env=env, text=True, capture_output=True)
        sys.stdout.write(result.stderr)
    print(f"  ({time.monotonic() - started:.1f}s, exit {result.returncode})", flush=True)
    if result.returncode != 0:
        raise DemoFailed(f"`migrator {args[0]}` exited {result.returncode}")
    return result


def downtime_breakdown(report: dict[str, Any]) -> str:
    """Where the downtime (source off → target Running) went, from `migrator status -o json`."""
    downtime = report.get("downtime_to_running_seconds")
    if not downtime:
        return "# downtime: not measured"
    seconds = {s["step"]: s["seconds"] or 0.0 for s in report["steps"]}
    parts = {"transfer": seconds.get("transfer", 0.0), "start": seconds.get("start", 0.0)}
    parts["wait for Running"] = max(downtime - sum(parts.values()), 0.0)
    shares = ", ".join(f"{name} {value:.1f}s ({100 * value / downtime:.0f}%)" for name, value in parts.items())
    line = f"# downtime {downtime:.1f}s (source off -> target Running): {shares}"
    verified = report.get("downtime_to_verified_seconds")
    if verified:
        line += f"\n# source off -> guest verified (console marker): {verified:.1f}s"
    return line


def main() -> int:
    out = Path("demo-out").resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {
        **os.environ,
        "MIGRATOR_STATE_DIR": str(out / "state"),
        "MIGRATOR_RUNTIME_DIR": str(out / "runtime"),
        "PYTHONUNBUFFERED": "1",
    }
    sim: simulator.Simulator | None = None
    target = DEMO_VM.lower().replace("_", "-")
    started_vm = False
    try:
        print("# starting the vCenter simulator (vcsim)", flush=True)
        sim = simulator.start()
        env["MIGRATOR_VSPHERE_PASSWORD"] = sim.password
        print(f"# vCenter at {sim.url}; building the tiny real guest and uploading it as a VMware disk", flush=True)
        from testbed.guestimage import build_guest, to_vmdk

        guest = build_guest(behaviour="wait", marker=MARKER)
        vmdks = to_vmdk(guest, out / "seed")
        backing = seed_guest_vm(sim, DEMO_VM, vmdks, mac=DEMO_MAC)
        print(f"# {DEMO_VM}: disk {backing}, NIC {DEMO_MAC}, {GUEST_MEMORY_MIB} MiB, powered on", flush=True)

        source = sim.source_url()
        _run(["plan", "--source", source, "--insecure", "-o", "table", "--output-file", str(out / "plan.yaml")], env)
        started_vm = True
        _run(
            [
                "cutover",
                "--source",
                source,
                "--insecure",
                "--vm",
                DEMO_VM,
                "--output-dir",
                str(out),
                "--verify-marker",
                MARKER,
                "--skip-conversion",  # the tiny guest is virtio-ready (and has no OS for virt-v2v to inspect)
            ],
            env,
        )
        print(f"\n# the guest's first console lines ({out / 'runtime' / target / 'console.log'}):", flush=True)
        console = (out / "runtime" / target / "console.log").read_text(errors="replace").splitlines()
        start = next((i for i, line in enumerate(console) if MARKER in line), 0)
        for line in console[start : start + 8]:
            print(f"  | {line}")
        _run(["status", "--vm", DEMO_VM], env)
        report = json.loads(_run(["status", "--vm", DEMO_VM, "-o", "json"], env, show=False).stdout)
        print(downtime_breakdown(report), flush=True)
        _run(["runtime", "stop", target], env)
        started_vm = False
        print("\n# demo complete", flush=True)
        return 0
    except (DemoFailed, MigratorError) as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return 1
    finally:
        if started_vm:  # never leave the guest behind
            subprocess.run([*_migrator(), "runtime", "stop", target], env=env, capture_output=True)
        if sim is not None:
            sim.stop()


if __name__ == "__main__":
    sys.exit(main())
