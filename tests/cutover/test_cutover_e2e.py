"""Cutover end to end on the vSphere simulator, with the tiny real guest as the VM's VMware disk.

plan → convert → cutover through the real CLI (subprocesses), the guest booting on the local
runtime; then the faults: kill -9 between each pair of steps and a re-run, a target that
fails to boot (rolled back), a source whose guest cannot be shut down (powered off).
Every local VM started here is stopped in teardown, and no QEMU is left behind.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyVmomi import vim

from core.wait import wait_until
from migrator import simulator
from migrator.simulator import seed
from testbed.demo import seed_guest_vm
from testbed.guestimage import build_guest, to_vmdk
from tests.e2e import MIGRATOR as MIGRATOR  # tests/cutover imports it from here
from tests.e2e import MigratorRun
from tests.faults import kill_after_step_env

MARKER = "MIGRATOR-GUEST-READY"
MAC = "00:50:56:2a:7c:01"
STEPS = [
    "preflight",
    "pre-hook",
    "source-off",
    "transfer",
    "convert-guest",
    "start",
    "verify",
    "mark-source",
    "post-hook",
]


def qemu_count(pattern: str = "qemu-system") -> int:
    result = subprocess.run(["pgrep", "-c", "-f", pattern], capture_output=True, text=True)
    return int(result.stdout.strip() or 0)


@dataclass
class Run(MigratorRun):
    """The CLI's cutover of one VM."""

    vm: str

    @property
    def target(self) -> str:
        return self.vm.lower().replace("_", "-")

    def cutover(self, *extra_args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """The Acceptance command, as written."""
        args = ["cutover", "--source", self.sim.source_url(), "--insecure", "--vm", self.vm]
        return self.migrator(*args, "--output-dir", str(self.out), *extra_args, **extra_env)

    def status(self) -> dict:
        result = self.migrator("status", "--vm", self.vm, "-o", "json")
        assert result.returncode == 0, result.stderr
        report: dict = json.loads(result.stdout)
        return report

    def console(self) -> str:
        path = self.runtime_dir / self.target / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_console(self, text: str, timeout: float = 180) -> bool:
        return bool(wait_until(lambda: text in self.console(), timeout=timeout, interval=0.5))

    def launcher_pid(self) -> str | None:
        path = self.runtime_dir / self.target / "launcher.pid"
        return path.read_text().strip() if path.exists() else None

    def stop_target(self) -> None:
        if (self.runtime_dir / self.target / "launcher.pid").exists():
            self.migrator("runtime", "stop", self.target, "--timeout", "240")

    def source_vm(self, source: object) -> vim.VirtualMachine:
        return source.find_vm(self.vm)  # type: ignore[attr-defined]

    def power_events(self) -> list[str]:
        """The source VM's power events, oldest first (vCenter's event log)."""
        with seed.session(self.sim) as source:
            manager = source.service_instance.content.eventManager
            spec = vim.event.EventFilterSpec(
                entity=vim.event.EventFilterSpec.ByEntity(entity=source.find_vm(self.vm), recursion="self"),
                eventTypeId=["VmPoweredOnEvent", "VmPoweredOffEvent"],  # vcsim returns one page: only these
            )
            events = sorted(manager.QueryEvents(spec), key=lambda e: (e.createdTime, e.key))
        kinds = {vim.event.VmPoweredOnEvent: "on", vim.event.VmPoweredOffEvent: "off"}
        return [kinds[type(e)] for e in events if type(e) in kinds]

    def source_state(self) -> tuple[str, str]:
        with seed.session(self.sim) as source:
            vm = source.find_vm(self.vm)
            return str(vm.runtime.powerState), vm.config.annotation or ""


@pytest.fixture(scope="module")
def guest_vmdk(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The tiny real guest (stays up, prints its marker) as a monolithic sparse VMDK: built once."""
    guest = build_guest(behaviour="wait", marker=MARKER)
    return to_vmdk(guest, tmp_path_factory.mktemp("guest"))


@pytest.fixture(scope="module")
def failing_vmdk(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A guest that powers itself off right after booting: a target that never comes up for good."""
    guest = build_guest(behaviour="poweroff", marker="BOOTED-THEN-GONE")
    return to_vmdk(guest, tmp_path_factory.mktemp("failing"))


@pytest.fixture(scope="module")
def no_qemu_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No QEMU outlives these tests. Other work on this machine may run QEMUs of its own at the same
    time, so ours are told apart by their disks, which live under this session's temporary dir."""
    ours = f"qemu-system.*{tmp_path_factory.getbasetemp()}"
    before = qemu_count()
    yield
    for _ in range(100):  # libvirt reaps a destroyed QEMU a moment after the launcher exits
        if qemu_count(ours) == 0:
            break
        time.sleep(0.2)
    assert qemu_count(ours) == 0, f"a QEMU started by these tests is still running ({before} QEMUs before)"


@pytest.fixture(scope="module")
def shared_sim(no_qemu_left: None) -> Iterator[simulator.Simulator]:
    """One simulator with 8 VMs for the fault tests: each test takes a VM of its own."""
    sim = simulator.start(vms_per_pool=5)
    try:
        yield sim
    finally:
        sim.stop()


# one VM per kill test (a step boundary each), and one more of its own for the boot-failure test
FAULT_VMS = [f"DC0_H0_VM{i}" for i in range(5)] + [f"DC0_C0_RP0_VM{i}" for i in range(5)]


def _run(sim: simulator.Simulator, base: Path, vm: str, vmdk: list[Path], mac: str) -> Iterator[Run]:
    seed_guest_vm(sim, vm, vmdk, mac=mac)
    run = Run(sim, base, vm)
    try:
        yield run
    finally:
        run.stop_target()


@pytest.fixture
def e2e(fresh_vcsim: simulator.Simulator, tmp_path: Path, guest_vmdk: list[Path], no_qemu_left: None) -> Iterator[Run]:
    yield from _run(fresh_vcsim, tmp_path, "DC0_H0_VM0", guest_vmdk, MAC)


def test_plan_convert_cutover_end_to_end(e2e: Run, guest_vmdk: list[Path]) -> None:
    plan_file = e2e.base / "plan.yaml"
    planned = e2e.migrator(
        "plan", "--source", e2e.sim.source_url(), "--insecure", "--vm", e2e.vm, "--output-file", str(plan_file)
    )
    assert planned.returncode == 0, planned.stderr
    converted = e2e.migrator(
        "convert", "--plan", str(plan_file), "--insecure", "--vm", e2e.vm, "--output-dir", str(e2e.out)
    )
    assert converted.returncode == 0, converted.stderr
    assert e2e.source_state()[0] == "poweredOn"  # convert never touches the source
    events_before = e2e.power_events()

    cutover = ("cutover", "--plan", str(plan_file), "--insecure", "--vm", e2e.vm, "--output-dir", str(e2e.out))
    first = e2e.migrator(*cutover, "--verify-marker", MARKER)
    assert first.returncode == 0, first.stdout + first.stderr
    # the copy convert made while the source ran is not trusted: the final transfer is a full copy
    assert "earlier copies of dc0-h0-vm0-disk-0 discarded" in first.stdout
    console = e2e.console()
    assert MARKER in console
    assert f"NIC eth0 {MAC}" in console  # the VMware MAC preserved
    power, annotation = e2e.source_state()
    assert power == "poweredOff"
    assert "Migrated by migrator to local:" in annotation and "dc0-h0-vm0" in annotation
    image = e2e.out / "dc0-h0-vm0-disk-0.img"
    compare = subprocess.run(["qemu-img", "compare", str(guest_vmdk[0]), str(image)], capture_output=True, text=True)
    assert compare.returncode == 0, compare.stdout + compare.stderr

    report = e2e.status()
    assert report["status"] == "completed" and report["error"] is None
    assert [s["step"] for s in report["steps"]] == STEPS and all(s["status"] == "done" for s in report["steps"])
    assert report["downtime_seconds"] > 0 and report["downtime_to_verified_seconds"] >= report["downtime_seconds"]
    assert report["source_power_state"] == "poweredOn"
    source_off = next(s for s in report["steps"] if s["step"] == "source-off")
    assert source_off["detail"] == "power-off after the guest did not shut down"  # vcsim: Tools not running
    assert "VMware Tools are not running" in first.stdout and "powering off" in first.stdout

    # the same cutover again: nothing done twice
    pid, stamp = e2e.launcher_pid(), image.stat().st_mtime_ns
    again = e2e.migrator(*cutover, "--verify-marker", MARKER)
    assert again.returncode == 0, again.stdout + again.stderr
    assert all(f"{step}: already done" in again.stdout for step in STEPS)
    assert e2e.launcher_pid() == pid and image.stat().st_mtime_ns == stamp
    assert e2e.power_events()[len(events_before) :] == ["off"]  # powered off once, never on again
    assert e2e.status()["downtime_seconds"] == report["downtime_seconds"]


@pytest.mark.parametrize(
    ("kill_after", "vm_index"),
    [(step, i) for i, step in enumerate(STEPS[:-1])],
    ids=[f"kill-after-{step}" for step in STEPS[:-1]],
)
def test_kill_9_between_steps_then_rerun(
    shared_sim: simulator.Simulator, tmp_path: Path, guest_vmdk: list[Path], kill_after: str, vm_index: int
) -> None:
    vm = FAULT_VMS[vm_index]
    mac = f"00:50:56:2a:7c:{0x10 + vm_index:02x}"
    for run in _run(shared_sim, tmp_path, vm, guest_vmdk, mac):
        # one of them runs the Acceptance command exactly as written: no guest check, Running is enough
        checks = [] if kill_after == "preflight" else ["--verify-marker", MARKER]
        killed = run.cutover(*checks, **kill_after_step_env(kill_after))
        assert killed.returncode == -9, killed.stdout + killed.stderr
        report = run.status()
        assert report["status"] == "running" and report["current_step"] == kill_after
        pid = run.launcher_pid()

        again = run.cutover(*checks)
        assert again.returncode == 0, again.stdout + again.stderr
        done_before = STEPS[: STEPS.index(kill_after) + 1]
        assert all(f"{step}: already done" in again.stdout for step in done_before)
        assert not any(f"{step}: already done" in again.stdout for step in STEPS[len(done_before) :])
        if pid is not None:  # the target was started before the kill: not started a second time
            assert run.launcher_pid() == pid
        assert run.status()["status"] == "completed"
        assert run.wait_console(f"NIC eth0 {mac}")
        assert run.power_events()[-1] == "off" and run.power_events().count("on") == 1  # vcsim's own power-on only
        assert run.source_state()[0] == "poweredOff"


def test_target_boot_failure_rolls_back(
    shared_sim: simulator.Simulator, tmp_path: Path, failing_vmdk: list[Path]
) -> None:
    vm = FAULT_VMS[-1]
    assert len(STEPS) - 1 < len(FAULT_VMS) - 1, "the kill tests would share this test's VM"
    for run in _run(shared_sim, tmp_path, vm, failing_vmdk, "00:50:56:2a:7c:77"):
        failed = run.cutover("--verify-marker", MARKER, "--verify-timeout", "120", "--rollback-on-failure")
        assert failed.returncode != 0
        lines = failed.stdout.splitlines()
        assert any(line.startswith("rollback: target dc0-c0-rp0-vm4 ") for line in lines), failed.stdout
        assert f"rollback: source {vm} powered back on (it was poweredOn before the cutover)" in lines
        assert failed.stderr.count("\n") == 1 and "rolled back" in failed.stderr and "verify" in failed.stderr
        assert run.source_state()[0] == "poweredOn"
        assert run.power_events()[-2:] == ["off", "on"]
        report = run.status()
        assert report["status"] == "rolled_back"
        assert "BOOTED-THEN-GONE" in run.console()  # it really booted, then went away

        # a later rollback (explicit) finds nothing left to do and powers nothing on twice
        later = run.migrator("cutover", "--rollback", "--vm", vm, "--insecure")  # source and target as recorded
        assert later.returncode == 0, later.stderr
        assert f"rollback: source {vm} was already powered on" in later.stdout
        assert run.power_events().count("on") == 2


def test_hook_failure_and_start_policy_source(
    fresh_vcsim: simulator.Simulator, tmp_path: Path, guest_vmdk: list[Path]
) -> None:
    """No boot here: a failing pre-hook leaves the source alone; a source that was off stays off on the target."""
    for run in _run(fresh_vcsim, tmp_path, "DC0_H0_VM1", guest_vmdk, MAC):
        # a hook named in the plan file is run by a cutover from that plan
        plan_file = tmp_path / "hooked-plan.yaml"
        hook = "sh -c 'echo from the plan >&2; exit 9'"
        source = ["--source", run.sim.source_url(), "--insecure", "--vm", run.vm]
        planned = run.migrator("plan", *source, "--pre-hook", hook, "--output-file", str(plan_file))
        assert planned.returncode == 0, planned.stderr
        target = ["--vm", run.vm, "--insecure", "--output-dir", str(run.out)]
        from_plan = run.migrator("cutover", "--plan", str(plan_file), *target)
        assert from_plan.returncode != 0 and "pre hook exited 9: from the plan" in from_plan.stderr
        assert run.source_state()[0] == "poweredOn" and run.power_events() == ["on"]

        hooked = run.cutover("--pre-hook", "sh -c 'echo change window closed >&2; exit 7'")
        assert hooked.returncode != 0
        assert hooked.stderr.strip().splitlines() == [
            "error: cutover of DC0_H0_VM1 stopped: step pre-hook failed: pre hook exited 7: change window closed; "
            "the source was not touched"
        ]
        assert run.source_state()[0] == "poweredOn" and run.power_events() == ["on"]
        assert run.status()["status"] == "failed"

        with seed.session(run.sim) as source:
            source.power_off(run.vm)
        done = run.cutover("--start", "source")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "pre-hook: already done" not in done.stdout  # the failed step runs again, without the hook now
        report = run.status()
        assert report["status"] == "completed" and report["source_power_state"] == "poweredOff"
        assert {s["step"]: s["detail"] for s in report["steps"]}[
            "start"
        ] == "created Halted: the source was not running"
        assert "runStrategy: Halted" in (run.out / "dc0-h0-vm1-vm.yaml").read_text()
        assert run.launcher_pid() is None and run.source_state()[0] == "poweredOff"


def test_command_line_mistakes_are_one_line(vcsim: simulator.Simulator, tmp_path: Path) -> None:
    run = Run(vcsim, tmp_path, "DC0_H0_VM0")
    cases = [
        (["cutover", "--vm", "x", "--output-dir", str(tmp_path)], "needs --plan FILE or --source"),
        (["cutover", "--vm", "x", "--source", vcsim.source_url(), "--insecure"], "needs a target"),
        (
            ["cutover", "--vm", "nope", "--source", vcsim.source_url(), "--insecure", "--output-dir", str(tmp_path)],
            "VM 'nope' not found",
        ),
        (
            ["cutover", "--vm", run.vm, "--source", vcsim.source_url(), "--insecure", "--output-dir", str(tmp_path)]
            + ["--rollback"],
            "no cutover recorded for VM DC0_H0_VM0",
        ),
        (
            ["cutover", "--vm", run.vm, "--source", vcsim.source_url(), "--insecure", "--output-dir", str(tmp_path)]
            + ["--verify-port", "22"],
            "the local runtime does not publish guest ports",
        ),
    ]
    for args, message in cases:
        result = run.migrator(*args)
        assert result.returncode != 0, args
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    (tmp_path / "state").mkdir(exist_ok=True)
    with (tmp_path / "state" / f"{run.vm}.lock").open("a+") as held:  # a cutover of this VM under way elsewhere
        fcntl.flock(held, fcntl.LOCK_EX)
        busy = run.cutover("--pre-hook", "false")  # the hook: even a broken lock would not touch the VM
    assert busy.returncode != 0 and f"another convert or cutover of {run.vm} is running" in busy.stderr
    with seed.session(vcsim) as source:
        assert source.power_state(run.vm) == "poweredOn"  # none of this touched the shared simulator's VM
