"""The rollback Acceptance, end to end: vcsim as the source, the tiny real guest on the local runtime, a
guest whose OS ignores the ACPI power button. A monitor samples the source's power state (vCenter) and the
target's launcher (its process, and libvirt's domain) all along: at no moment do both run.

- a cutover whose verification times out, with --rollback-on-failure, ends within verify-timeout plus the
  announced grace period; the target is destroyed, then the source powered back on; downtime is named;
- `cutover --rollback` of a completed cutover stops the (ACPI-deaf) target within the grace it announced,
  restores the source's note, and only then powers the source on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pyVmomi import vim

from migrator import simulator
from migrator.cutover.targets.local import domain_active
from migrator.simulator import seed
from migrator.sources.vsphere.operations import wait_for_task
from runtime import local
from testbed.demo import seed_guest_vm
from testbed.guestimage import build_guest, to_vmdk
from tests.cutover.test_cutover_e2e import MIGRATOR, Run
from tests.cutover.test_cutover_e2e import no_qemu_left as no_qemu_left  # a fixture: every QEMU of ours ends

MARKER = "OPS-GUEST-UP"
VERIFY_TIMEOUT = 15.0
GRACE = 5.0
# what a rollback does besides the grace: destroy, libvirt's confirmation, vCenter's power-on, and the
# process starting and connecting (measured: a few seconds; generous for a loaded 2-core machine)
SLACK = 25.0


@pytest.fixture(scope="module")
def deaf_vmdk(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The tiny guest, its OS ignoring the ACPI power button: only a destroy stops it."""
    return to_vmdk(build_guest(behaviour="ignore-acpi", marker=MARKER), tmp_path_factory.mktemp("deaf"))


@dataclass
class Monitor:
    """Samples (time, source powered on, target running) until stopped."""

    run: Run
    samples: list[tuple[float, bool, bool]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def target_running(self) -> bool:
        state = self.run.runtime_dir / self.run.target
        return local.launcher_pid(state) is not None or domain_active(self.run.target)

    def watch(self) -> None:
        with seed.session(self.run.sim) as source:
            vm = source.find_vm(self.run.vm)
            while not self.stop.is_set():
                # the target first: a source seen on after a target seen off can only be a later source
                target = self.target_running()
                source_on = str(vm.runtime.powerState) == "poweredOn"
                self.samples.append((time.monotonic(), source_on, target))
                time.sleep(0.2)

    def __enter__(self) -> Monitor:
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)

    def both_running(self) -> list[float]:
        return [t for t, source_on, target in self.samples if source_on and target]


@pytest.fixture
def deaf(
    fresh_vcsim: simulator.Simulator, tmp_path: Path, deaf_vmdk: list[Path], request: pytest.FixtureRequest
) -> Iterator[Run]:
    request.getfixturevalue("no_qemu_left")
    name = f"ops-rollback-{os.getpid()}"  # unique on the shared libvirtd
    with seed.session(fresh_vcsim) as source:
        wait_for_task(source.find_vm("DC0_H0_VM0").Rename_Task(newName=name), "rename")
    seed_guest_vm(fresh_vcsim, name, deaf_vmdk, mac="00:50:56:2a:7d:01")
    with seed.session(fresh_vcsim) as source:
        vm = source.find_vm(name)
        # a UUID of its own too: libvirt refuses a second domain with the UUID of another test's VM
        spec = vim.vm.ConfigSpec(annotation="Owner: ops team", uuid=str(uuid.uuid4()))
        task = vm.ReconfigVM_Task(spec=spec)
        wait_for_task(task, "annotate")
    run = Run(fresh_vcsim, tmp_path, name)
    try:
        yield run
    finally:
        state = run.runtime_dir / run.target
        if local.launcher_pid(state) is not None:
            subprocess.run(["kill", "-9", str(local.launcher_pid(state))], check=False)


def _timed_lines(process: subprocess.Popen[str]) -> list[tuple[float, str]]:
    assert process.stdout is not None
    return [(time.monotonic(), line.rstrip("\n")) for line in process.stdout]


def test_verify_timeout_rolls_back_within_the_grace_and_never_runs_two_copies(deaf: Run) -> None:
    args = ["cutover", "--source", deaf.sim.source_url(), "--insecure", "--vm", deaf.vm, "--output-dir", str(deaf.out)]
    args += ["--verify-marker", "NEVER-PRINTED", "--verify-timeout", str(VERIFY_TIMEOUT)]
    args += ["--rollback-on-failure", "--stop-grace", str(GRACE)]
    with Monitor(deaf) as monitor:
        process = subprocess.Popen(
            [str(MIGRATOR), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=deaf.env(PYTHONUNBUFFERED="1"),
        )
        lines = _timed_lines(process)
        stderr = process.stderr.read() if process.stderr else ""
        process.wait(600)
        ended = time.monotonic()
        time.sleep(1.0)  # a last sample after the end
    text = "\n".join(line for _t, line in lines)
    assert process.returncode == 4, text + stderr
    verify_started = next(t for t, line in lines if line.startswith("verify: "))
    assert ended - verify_started <= VERIFY_TIMEOUT + GRACE + SLACK, text
    assert f"destroyed after {GRACE:.0f}s if still up" in text  # the grace is announced
    assert f"rollback: target {deaf.target} destroyed after the {GRACE:.0f}s grace period" in text
    assert f"rollback: source {deaf.vm} powered back on (it was poweredOn before the cutover)" in text
    assert stderr.count("\n") == 1 and "rolled back" in stderr and "(source off → source back on)" in stderr

    assert monitor.both_running() == [], "source and target both ran"
    assert any(target for _t, _s, target in monitor.samples), "the monitor never saw the target run"
    assert monitor.samples[-1][1] and not monitor.samples[-1][2]  # the source is back, the target gone
    report = deaf.status()
    assert report["status"] == "rolled_back"
    assert report["downtime_to_source_back_seconds"] > 0 and report["downtime_to_verified_seconds"] is None
    assert report["downtime_seconds"] == report["downtime_to_source_back_seconds"]
    log_file = Path(report["log_file"])
    assert "INFO migrator.announce: verify: " in log_file.read_text()  # the run, as it was printed
    assert deaf.sim.password not in log_file.read_text()
    assert log_file.stat().st_mode & 0o777 == 0o600 and log_file.parent.stat().st_mode & 0o777 == 0o700


def test_rollback_of_a_completed_cutover_destroys_the_deaf_target_and_restores_the_note(deaf: Run) -> None:
    done = deaf.cutover("--verify-marker", MARKER, "--verify-timeout", "300", "--progress", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(line.startswith("{") for line in done.stdout.splitlines()), done.stdout  # every line an event
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert all(e["vm"] == deaf.vm and e["time"].endswith("Z") for e in events)
    assert any(e.get("disk") == f"{deaf.target}-disk-0" and e["state"] == "done" for e in events)  # the transfer
    assert "(source off → target verified)" in events[-1]["message"]
    power, note = deaf.source_state()
    assert power == "poweredOff" and note.startswith("Owner: ops team\nMigrated by migrator to local:")

    with Monitor(deaf) as monitor:
        started = time.monotonic()
        back = deaf.migrator("cutover", "--rollback", "--vm", deaf.vm, "--insecure", "--stop-grace", str(GRACE))
        took = time.monotonic() - started
        time.sleep(1.0)
    assert back.returncode == 0, back.stdout + back.stderr
    assert took <= GRACE + SLACK, back.stdout
    assert f"rollback: target {deaf.target} destroyed after the {GRACE:.0f}s grace period" in back.stdout
    assert f"rollback: source {deaf.vm}: note restored as it was before the cutover" in back.stdout
    assert f"cutover of {deaf.vm} rolled back" in back.stdout
    assert monitor.both_running() == [], "source and target both ran"
    assert deaf.source_state() == ("poweredOn", "Owner: ops team")


def test_ctrl_c_after_source_off_is_recorded_and_says_where_the_cutover_stands(deaf: Run) -> None:
    args = ["cutover", "--source", deaf.sim.source_url(), "--insecure", "--vm", deaf.vm, "--output-dir", str(deaf.out)]
    process = subprocess.Popen(
        [str(MIGRATOR), *args, "--verify-marker", "NEVER-PRINTED", "--verify-timeout", "300"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=deaf.env(PYTHONUNBUFFERED="1"),
    )
    assert process.stdout is not None and process.stderr is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("verify: "):
            break
    assert seen[-1].startswith("verify: "), "".join(seen) + process.stderr.read()
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    sent = time.monotonic()
    process.wait(60)
    assert time.monotonic() - sent < 5
    expected = "source is off, interrupted in step verify: re-run to resume, or roll back"
    stderr = process.stderr.read()
    assert process.returncode == 130, stderr
    assert stderr == f"error: {expected}\n"
    report = deaf.status()
    assert report["status"] == "interrupted" and report["where"] == expected
    table = deaf.migrator("status", "--vm", deaf.vm).stdout
    assert expected in table
    assert deaf.source_state()[0] == "poweredOff"

    back = deaf.migrator("cutover", "--rollback", "--vm", deaf.vm, "--insecure", "--stop-grace", "3")
    assert back.returncode == 0, back.stdout + back.stderr
    assert deaf.source_state() == ("poweredOn", "Owner: ops team") and deaf.status()["status"] == "rolled_back"
