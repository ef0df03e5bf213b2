"""`migrator migrate` end to end on the vSphere simulator: real CLI processes, the tiny real guest
booting on the local runtime, concurrency limits, cancel from another shell, kill -9 and resume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator import simulator
from testbed.guestimage import build_guest, to_vmdk
from tests.migrate.estate import MARKER, Estate, images_equal, seed_estate

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
    for vm in SIM_VMS:
        assert estate.power_state(vm) == "poweredOff", vm
        assert images_equal(guest_vmdk[0], estate.image(vm)), vm
    reports = estate.status()
    assert sorted(r["vm"] for r in reports) == sorted(SIM_VMS)
    for report in reports:
        assert report["status"] == "completed", report
        assert report["downtime_seconds"] is not None and report["downtime_seconds"] > 0, report
    lines = result.stdout.splitlines()
    # the summary table: a row per VM with its outcome and downtime
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["VM", "OUTCOME", "DOWNTIME"])
    rows = {line.split()[0]: line.split() for line in lines[header + 2 : header + 6]}
    assert sorted(rows) == sorted(SIM_VMS)
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
