"""`migrator migrate` with warm VMs, end to end on the vSphere simulator (its changed-block tracking), real CLI
processes: precopy rounds paced by the run's in-flight slots, cutover on `cutover --now` or at `--cutover-at`,
cancel of one warm VM mid-precopy, kill -9 of the coordinator mid-precopy and a re-run.

The disks are tiny flat VMDKs of random data (no guest OS: `--skip-conversion`); the targets start on the local
runtime and are only awaited Running (no boot marker). "Guest writes" are writes into the disks' flat files in the
simulator's datastore directory, between rounds.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from migrator import simulator
from migrator.migrate.progress import RoundEvent
from migrator.simulator import seed
from tests.migrate.estate import Estate, events, target_name
from tests.warm.cbt_env import datastore_path, enable_cbt, flat_vmdk, guest_writes, rename, snapshot_names

MiB = 1 << 20
DISK = 16 * MiB
WRITABLE = (2 * MiB, 15 * MiB)
SIM_VMS = ["DC0_H0_VM0", "DC0_C0_RP0_VM0"]  # vcsim's VMs with one per pool
PREFIX = "estw-"  # the local runtime's libvirt domains are named after the VMs: ours are told apart


class WarmEstate(Estate):
    flats: dict[str, Path]

    def same_as_source(self, vm: str) -> bool:
        compare = subprocess.run(
            ["qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", str(self.flats[vm]), str(self.image(vm))],
            capture_output=True,
        )
        return compare.returncode == 0

    def writes(self, vm: str, seed_value: int) -> None:
        guest_writes(self.flats[vm], 8, 8192, seed_value=seed_value, region=WRITABLE)


@pytest.fixture
def estate(tmp_path: Path) -> Iterator[WarmEstate]:
    sim = simulator.start(vms_per_pool=1, standalone_hosts=1, hosts_per_cluster=1, cbt_page_bytes=4 * MiB)
    run: WarmEstate | None = None
    try:
        names, flats = [], {}
        run_id = uuid.uuid4().hex[:6]
        for index, vm in enumerate(SIM_VMS):
            name = rename(sim, vm, f"{PREFIX}{run_id}-{index}")
            rng = random.Random(index)
            raw = tmp_path / f"disk{index}.raw"
            with raw.open("wb") as f:
                f.truncate(DISK)
                for offset in (0, 5 * MiB, 11 * MiB):
                    f.seek(offset)
                    f.write(rng.randbytes(MiB))
            files = flat_vmdk(raw, tmp_path / f"vmdk{index}", f"disk{index}")
            backing = seed.attach_disk_image(sim, name, files, mac=f"00:50:56:3e:16:{index:02x}")
            enable_cbt(sim, name)
            flats[name] = datastore_path(sim, backing.replace(".vmdk", "-flat.vmdk"))
            names.append(name)
        run = WarmEstate(sim, tmp_path, names)
        run.flats = flats
        yield run
    finally:
        if run is not None:
            run.stop_targets()
        sim.stop()


def _read_until(process: subprocess.Popen[str], seen: list[dict[str, Any]], done: Callable[[], bool]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("{"):
            seen.append(json.loads(line))
            if done():
                return
    raise AssertionError(f"migrate ended first: {seen[-5:]} {process.stderr.read() if process.stderr else ''}")


def _ended(process: subprocess.Popen[str], timeout: float = 180) -> tuple[str, str]:
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"migrate did not end within {timeout}s: {out[-3000:]}{err[-2000:]}") from None


def _rounds_done(seen: list[dict[str, Any]], vm: str) -> list[int]:
    return [e["round"] for e in seen if e["event"] == "round" and e["vm"] == vm and e["status"] == "done"]


def _copying_spans(seen: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    """(vm, first event index, last event index) of each time a VM held its slot: a round, or its cutover to its end."""
    spans, opened = [], {}
    for index, e in enumerate(seen):
        vm = e.get("vm")
        if e["event"] == "round" and e["status"] in ("started", "cutover"):
            opened[vm] = index
        elif (e["event"] == "round" and e["status"] == "done") or e["event"] == "vm":
            if vm in opened:
                spans.append((vm, opened.pop(vm), index))
    return spans


def test_two_warm_vms_one_slot_precopy_and_cut_over_on_now_and_at_a_time(estate: WarmEstate) -> None:
    first, second = estate.vms
    estate.plan("--vm", first, "--vm", second)
    at = (datetime.now(UTC) + timedelta(seconds=20)).isoformat(timespec="seconds")
    args = ("--warm", "--max-in-flight", "1", "--precopy-interval", "2", "--cutover-at", at, "--progress", "json")
    args += ("--max-rate", "32MiB/s")
    run = estate.popen(*estate.migrate_args(*args))
    seen: list[dict[str, Any]] = []
    try:
        _read_until(run, seen, lambda: 1 in _rounds_done(seen, first) and 1 in _rounds_done(seen, second))
        estate.writes(first, 1)
        estate.writes(second, 2)
        _read_until(run, seen, lambda: len(_rounds_done(seen, first)) >= 2 and len(_rounds_done(seen, second)) >= 2)
        estate.writes(first, 3)
        now = estate.migrator("cutover", "--vm", first, "--now")  # another shell
        assert now.returncode == 0 and "requested" in now.stdout, now.stdout + now.stderr
        out, err = _ended(run)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, out + err
    seen += events(out)
    outcomes = {e["vm"]: e for e in seen if e["event"] == "vm"}
    assert {vm: o["outcome"] for vm, o in outcomes.items()} == {first: "migrated", second: "migrated"}
    assert all(o["downtime_seconds"] > 0 for o in outcomes.values()), outcomes
    # one slot: no two VMs ever copied (or cut over) at once, yet the second precopied before the first was done
    spans = _copying_spans(seen)
    for vm, start, end in spans:
        assert not any(o != vm and s < end and start < e for o, s, e in spans), spans
    first_end = next(i for i, e in enumerate(seen) if e["event"] == "vm" and e["vm"] == first)
    assert any(vm == second and end < first_end for vm, _start, end in spans), spans
    progress = [e for e in seen if e["event"] == "progress" and e.get("next_round_at")]
    assert progress and all("precopy_rounds" in e for e in progress)
    # the rounds drew on the run's bandwidth bucket (through each VM's meter, which counts what it let through)
    for vm in (first, second):
        assert max(e["bytes_done"] for e in seen if e["event"] == "progress" and e["vm"] == vm) >= 3 * MiB
    reports = {r["vm"]: r for r in estate.status()}
    for vm in (first, second):
        report = reports[vm]
        assert report["status"] == "completed", report
        assert len([r for r in report["rounds"] if r["kind"] == "precopy"]) >= 2, report["rounds"]
        assert report["downtime_seconds"] > 0
        assert estate.power_state(vm) == "poweredOff"
        assert estate.same_as_source(vm), vm
        assert snapshot_names(estate.sim, vm) == []
    assert reports[first]["cutover_requested_at"] is not None
    assert reports[second]["cutover_requested_at"] is None  # it cut over at --cutover-at
    assert "--cutover-at reached" in next(s for s in reports[second]["steps"] if s["step"] == "precopy")["detail"]


def test_cancel_of_one_warm_vm_mid_precopy_rolls_it_back_the_other_goes_on(estate: WarmEstate) -> None:
    cancelled, other = estate.vms
    estate.plan("--vm", cancelled, "--vm", other, "--type", "warm")  # warm by the plan, no --warm
    run = estate.popen(*estate.migrate_args("--max-in-flight", "2", "--precopy-interval", "2", "--progress", "plain"))
    lines: list[str] = []
    try:
        assert run.stdout is not None
        for line in run.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith(f"{cancelled}: precopy round 2: done"):
                break
        asked = estate.migrator("cancel", "--vm", cancelled)
        assert asked.returncode == 0 and "requested (in step precopy)" in asked.stdout, asked.stdout + asked.stderr
        for line in run.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith(f"{cancelled}: cancelled"):
                break
        estate.writes(other, 4)
        now = estate.migrator("cutover", "--vm", other, "--now")
        assert now.returncode == 0, now.stdout + now.stderr
        out, err = _ended(run)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, "\n".join(lines) + out + err
    lines += out.splitlines()
    assert any(f"{cancelled}: cancelled: cancelled by request in step precopy: rolled back" in li for li in lines)
    # the cancelled VM: rolled back, its source still running, no snapshot of ours, nothing left on the target
    reports = {r["vm"]: r for r in estate.status()}
    assert reports[cancelled]["status"] == "rolled_back", reports[cancelled]
    assert estate.power_state(cancelled) == "poweredOn"
    assert snapshot_names(estate.sim, cancelled) == []
    assert not estate.image(cancelled).exists()
    assert not (estate.out / f"{target_name(cancelled)}-vm.yaml").exists()
    # the other went on, and the summary table shows its downtime
    assert reports[other]["status"] == "completed"
    assert estate.same_as_source(other)
    assert snapshot_names(estate.sim, other) == []
    row = next(li.split() for li in lines if li.startswith(f"{other} ") and "migrated" in li)
    assert row[1] == "migrated" and row[2].endswith("s") and row[2] != "-", row


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["time"])


def test_kill_9_mid_precopy_then_rerun_resumes_and_cuts_over_at_the_wave_window(estate: WarmEstate) -> None:
    first, second = estate.vms
    opens = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=20)
    window = f"w={opens.isoformat().replace('+00:00', 'Z')}/"
    estate.plan("--vm", first, "--vm", second, "--wave", f"w={PREFIX}*", "--wave-window", window)
    args = ("--warm", "--max-in-flight", "2", "--precopy-interval", "2", "--progress", "json")
    run = estate.popen(*estate.migrate_args(*args))
    seen: list[dict[str, Any]] = []
    try:
        _read_until(run, seen, lambda: len(_rounds_done(seen, first)) >= 2 and len(_rounds_done(seen, second)) >= 1)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    # warm VMs precopy before their wave's window opens (cold ones would wait for it)
    assert all(_at(e) < opens for e in seen if e["event"] == "round")
    before = {r["vm"]: r for r in estate.status()}
    assert all(before[vm]["status"] == "running" and before[vm]["current_step"] == "precopy" for vm in estate.vms)
    assert all(snapshot_names(estate.sim, vm) for vm in estate.vms)  # the last round's, kept for the re-run
    estate.writes(first, 5)
    # the re-run: no --warm (recorded warm migrations resume warm, their recorded interval kept), no --now:
    # each VM cuts over when the wave's window opens
    rerun = estate.popen(*estate.migrate_args("--progress", "json"))
    out, err = _ended(rerun)
    assert rerun.returncode == 0, out + err
    seen = events(out)
    started = {(e["vm"], e["step"]) for e in seen if e["event"] == "step" and e["status"] == "started"}
    assert not any(step in ("warm-preflight", "preflight") for _vm, step in started)  # resumed, not redone
    source_off = [e for e in seen if e["event"] == "step" and e["step"] == "source-off" and e["status"] == "started"]
    assert len(source_off) == 2 and all(_at(e) >= opens for e in source_off), source_off
    after = {r["vm"]: r for r in estate.status()}
    for vm in estate.vms:
        kept = [r for r in before[vm]["rounds"] if r["finished_at"]]
        assert after[vm]["rounds"][: len(kept)] == kept, vm  # the rounds done before the kill are not redone
        assert after[vm]["status"] == "completed" and after[vm]["cutover_requested_at"] is None
        assert estate.same_as_source(vm), vm
        assert snapshot_names(estate.sim, vm) == []


class _Rounds:
    """A view that keeps the round events."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None, str]] = []

    def round(self, event: RoundEvent) -> None:
        self.seen.append((event.vm, event.number, event.status))


def test_rounds_wait_for_their_time_not_for_a_slot() -> None:
    """Between rounds a warm VM holds no slot: with one slot, a second VM starts while the first waits."""
    import threading

    from migrator.cutover.precopy import Round
    from migrator.migrate.scheduler import Waiting
    from migrator.migrate.slots import SlotPacing, Slots

    slots, view = Slots(), _Rounds()
    slots.take("a")
    pacing = SlotPacing(Waiting("a", "h", 1), slots, lambda: None, view)  # type: ignore[arg-type]
    pacing.copy(1)
    assert slots.holders() == ["a"]
    done = Round(1, "precopy", "migrator-precopy-1", "s1", started_at=time.time() - 1, finished_at=time.time())
    pacing.idle(done, time.time() + 60)
    pacing.idle(done, time.time() + 60)  # idempotent: one event
    assert slots.holders() == [] and view.seen == [("a", 1, "started"), ("a", 1, "done")]
    granted: list[bool] = []

    def ask() -> None:
        pacing.copy(2)
        granted.append(True)

    asker = threading.Thread(target=ask)
    asker.start()
    deadline = time.monotonic() + 5
    while not slots.asking() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [w.vm for w in slots.asking()] == ["a"] and not granted
    slots.grant("a")
    asker.join(5)
    assert granted and slots.holders() == ["a"]

    def stop() -> None:
        raise RuntimeError("cancelled")

    slots.give_back("a")
    stopped = SlotPacing(Waiting("a", "h", 1), slots, stop, view)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        stopped.copy(3)
    assert slots.asking() == []


def test_a_warm_cutover_is_not_begun_after_its_wave_s_window_closed() -> None:
    from migrator.cutover.precopy import Round
    from migrator.migrate.scheduler import Waiting
    from migrator.migrate.slots import SlotPacing, Slots, WindowClosed

    closed: list[str | None] = [None]
    slots = Slots()
    slots.take("a")
    pacing = SlotPacing(Waiting("a", "h", 1), slots, lambda: None, _Rounds(), closed=lambda: closed[0])
    pacing.copy(1)
    done = Round(1, "precopy", "migrator-precopy-1", "s1", started_at=time.time() - 1, finished_at=time.time())
    pacing.idle(done, time.time() + 60)
    closed[0] = "the cutover window of wave w closed"
    with pytest.raises(WindowClosed, match="window of wave w closed before the cutover of a began"):
        pacing.idle(done, time.time() + 60)  # while it waits for its next round
    with pytest.raises(WindowClosed):
        pacing.copy(None)  # its cutover, due, not begun
    assert slots.holders() == [] and slots.asking() == []
