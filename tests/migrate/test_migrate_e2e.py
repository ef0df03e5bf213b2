"""`migrator migrate` end to end on the vSphere simulator: real CLI processes, the tiny real guest
booting on the local runtime, concurrency limits, cancel from another shell, kill -9 and resume."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from migrator import simulator
from migrator.cutover.steps import CUTOVER_STEPS
from testbed.guestimage import build_guest, to_vmdk
from tests.migrate.estate import MARKER, Estate, events, images_equal, seed_estate, target_name

SIM_VMS = ["DC0_H0_VM0", "DC0_H0_VM1", "DC0_C0_RP0_VM0", "DC0_C0_RP0_VM1"]  # vcsim's VMs with the defaults


@pytest.fixture(scope="module")
def guest_vmdk(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    guest = build_guest(behaviour="wait", marker=MARKER)
    return to_vmdk(guest, tmp_path_factory.mktemp("estate-guest"))


@pytest.fixture
def estate(fresh_vcsim: simulator.Simulator, tmp_path: Path, guest_vmdk: list[Path]) -> Iterator[Estate]:
    run = seed_estate(fresh_vcsim, tmp_path, SIM_VMS, guest_vmdk)
    try:
        yield run
    finally:
        run.stop_targets()


def test_acceptance_four_vms_two_in_flight(estate: Estate, guest_vmdk: list[Path]) -> None:
    estate.plan()
    result = estate.migrator(*estate.migrate_args("--max-in-flight", "2"))
    assert result.returncode == 0, result.stdout + result.stderr
    for vm in estate.vms:
        assert estate.power_state(vm) == "poweredOff", vm
        assert images_equal(guest_vmdk[0], estate.image(vm)), vm
    reports = estate.status()
    assert sorted(r["vm"] for r in reports) == sorted(estate.vms)
    for report in reports:
        assert report["status"] == "completed", report
        assert report["downtime_seconds"] is not None and report["downtime_seconds"] > 0, report
    lines = result.stdout.splitlines()
    # the summary table: a row per VM with its outcome and downtime
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["VM", "OUTCOME", "DOWNTIME"])
    rows = {line.split()[0]: line.split() for line in lines[header + 2 : header + 6]}
    assert sorted(rows) == sorted(estate.vms)
    assert all(row[1] == "migrated" and row[2].endswith("s") for row in rows.values()), rows
    assert lines[-1] == "4 VM(s): 4 migrated"
    assert_in_flight_at_most(lines, 2)


def assert_in_flight_at_most(lines: list[str], limit: int) -> None:
    """From the plain progress lines: VMs between "VM: migrating" and their outcome line."""
    in_flight: set[str] = set()
    peak = 0
    for line in lines:
        vm, _, what = line.partition(": ")
        if what == "migrating":
            in_flight.add(vm)
            peak = max(peak, len(in_flight))
        elif what.startswith(("migrated", "failed", "cancelled")):
            in_flight.discard(vm)
    assert peak == limit, f"peak {peak} VMs in flight, limit {limit}"


def _read_until(process: subprocess.Popen[str], predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """JSON events from a running `migrate --progress json` until one satisfies ``predicate``."""
    seen: list[dict[str, Any]] = []
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("{"):
            seen.append(json.loads(line))
            if predicate(seen[-1]):
                return seen
    raise AssertionError(f"migrate ended first: {seen[-5:]} {process.stderr.read() if process.stderr else ''}")


def _step(vm: str, step: str, status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["event"] == "step" and e.get("vm") == vm and e.get("step") == step and e["status"] == status


def test_cancel_from_another_shell_rolls_that_vm_back(estate: Estate, guest_vmdk: list[Path]) -> None:
    cancelled, other = estate.vms[:2]
    estate.vms = [cancelled, other]
    estate.plan("--vm", cancelled, "--vm", other)
    run = estate.popen(*estate.migrate_args("--max-rate", "3MiB/s", "--progress", "json"))
    try:
        before = _read_until(run, _step(cancelled, "transfer", "started"))
        asked = estate.migrator("cancel", "--vm", cancelled)
        assert asked.returncode == 0, asked.stderr
        assert f"cancel of {cancelled} requested (in step transfer)" in asked.stdout
        out, err = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, out + err
    seen = before + events(out)
    outcomes = {e["vm"]: e for e in seen if e["event"] == "vm"}
    assert outcomes[cancelled]["outcome"] == "cancelled"
    assert "cancelled by request in step transfer: rolled back" in outcomes[cancelled]["error"]
    assert outcomes[other]["outcome"] == "migrated"
    # the cancelled VM: source back on (it was on), nothing left on the target
    assert estate.power_state(cancelled) == "poweredOn"
    assert not estate.image(cancelled).exists()
    assert not (estate.out / f"{target_name(cancelled)}-vm.yaml").exists()
    assert estate.launcher_pid(cancelled) is None
    # the other went on
    assert estate.power_state(other) == "poweredOff"
    assert images_equal(guest_vmdk[0], estate.image(other))
    reports = {r["vm"]: r for r in estate.status()}
    assert reports[cancelled]["status"] == "rolled_back" and reports[cancelled]["error"] == "cancelled by request"
    assert reports[other]["status"] == "completed"
    # a later run leaves the cancelled VM alone unless it is named
    again = estate.migrator(*estate.migrate_args())
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{cancelled}: skipped: cancelled earlier" in again.stdout
    assert f"{other}: already migrated" in again.stdout


def test_kill_9_of_the_coordinator_then_rerun_resumes(estate: Estate, guest_vmdk: list[Path]) -> None:
    first, second, third = estate.vms[:3]
    estate.vms = [first, second, third]
    estate.plan("--vm", first, "--vm", second, "--vm", third)
    run = estate.popen(*estate.migrate_args("--max-in-flight", "1", "--max-rate", "4MiB/s", "--progress", "json"))
    try:
        _read_until(run, _step(second, "transfer", "started"))
        time.sleep(2)  # some of the second VM's disk copied
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == -9
    reports = {r["vm"]: r for r in estate.status()}
    assert reports[first]["status"] == "completed"
    assert reports[second]["status"] == "running" and reports[second]["current_step"] == "transfer"
    assert third not in reports
    pid = estate.launcher_pid(first)
    assert pid is not None

    again = estate.migrator(*estate.migrate_args("--max-in-flight", "1", "--progress", "json"))
    assert again.returncode == 0, again.stdout + again.stderr
    seen = events(again.stdout)
    outcomes = {e["vm"]: e["outcome"] for e in seen if e["event"] == "vm"}
    assert outcomes == {first: "already migrated", second: "migrated", third: "migrated"}
    started = {(e["vm"], e["step"]) for e in seen if e["event"] == "step" and e["status"] == "started"}
    assert not any(vm == first for vm, _step_name in started)  # finished: nothing redone
    names = [step.name for step in CUTOVER_STEPS]
    assert {s for vm, s in started if vm == second} == set(names[names.index("transfer") :])
    assert (third, "preflight") in started
    assert estate.launcher_pid(first) == pid  # its target was not started again
    for vm in estate.vms:
        assert estate.power_state(vm) == "poweredOff"
        assert images_equal(guest_vmdk[0], estate.image(vm)), vm
    assert all(r["status"] == "completed" for r in estate.status())
