"""The pure parts of `migrate`: the shared token bucket, the Forklift-style scheduler, selection and waves."""

from __future__ import annotations

import threading
import time

import pytest

from converters.disks.ratelimit import TokenBucket
from core.errors import InputError, NotFoundError
from core.plan import Concern, CutoverWindow, Plan, Severity, Wave
from migrator.migrate.meter import Stopped, VmMeter, parse_rate
from migrator.migrate.scheduler import InFlight, Limits, Waiting, startable
from migrator.migrate.selection import select
from migrator.planning.mapping import build_maps
from migrator.planning.planner import PlanOptions, build_plan
from migrator.planning.waves import build_waves, check_waves
from tests.planning.factory import make_vm


def test_one_bucket_shared_by_many_threads_holds_the_rate() -> None:
    rate = 40 << 20  # 40 MiB/s over 8 threads drawing 1 MiB chunks as fast as they can
    bucket = TokenBucket(rate)
    moved = [0]
    lock = threading.Lock()
    stop = time.monotonic() + 2.0

    def draw() -> None:
        while time.monotonic() < stop:
            bucket.acquire(1 << 20)
            with lock:
                moved[0] += 1 << 20

    threads = [threading.Thread(target=draw) for _ in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    measured = moved[0] / (time.monotonic() - started)
    assert abs(measured - rate) / rate <= 0.10, f"{measured / (1 << 20):.1f} MiB/s for a 40 MiB/s limit"


def test_a_chunk_larger_than_the_bucket_passes_on_credit() -> None:
    clock = [0.0]
    slept: list[float] = []
    bucket = TokenBucket(100, burst=10, clock=lambda: clock[0], sleep=slept.append)
    bucket.acquire(1000)  # ten seconds' worth: allowed, then paid off
    assert slept == [10.0]
    clock[0] = 10.0
    bucket.acquire(100)
    assert slept[-1] == pytest.approx(1.0)


def test_meter_counts_and_stops_at_the_next_chunk() -> None:
    reason: list[str | None] = [None]
    meter = VmMeter(TokenBucket(1 << 30), lambda: reason[0])
    meter.acquire(4096)
    meter.acquire(4096)
    assert meter.bytes == 8192 and meter.rate() > 0
    reason[0] = "cancelled by request"
    with pytest.raises(Stopped, match="cancelled by request"):
        meter.acquire(4096)
    assert meter.bytes == 8192


@pytest.mark.parametrize(
    ("text", "rate"),
    [("200MiB/s", 200 << 20), ("50MB/s", 50e6), ("1GiB/s", 1 << 30), ("800k", 800e3), ("1.5 MiB / s", 1.5 * (1 << 20))],
)
def test_parse_rate(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "0MiB/s", "10 parsecs/s", "-5MB/s", ""])
def test_parse_rate_refuses(text: str) -> None:
    with pytest.raises(InputError, match="--max-rate"):
        parse_rate(text)


def test_scheduler_counts_disks_per_host_as_forklift() -> None:
    limits = Limits(max_in_flight=10, max_disks_per_host=4)
    waiting = [Waiting("a", "h1", 3), Waiting("b", "h1", 2), Waiting("c", "h1", 1), Waiting("d", "h2", 4)]
    # a (3) fits on h1, b (2) would make 5: skipped without blocking c (1); d fills h2
    assert startable(waiting, [], limits) == ["a", "c", "d"]
    # a VM past its transfer no longer counts against its host
    busy = [InFlight("x", "h1", 4, transferred=False)]
    assert startable(waiting, busy, limits) == ["d"]
    done_copying = [InFlight("x", "h1", 4, transferred=True)]
    assert startable(waiting, done_copying, limits) == ["a", "c", "d"]


def test_scheduler_runs_an_oversized_vm_alone_on_its_host() -> None:
    limits = Limits(max_in_flight=10, max_disks_per_host=2)
    big = [Waiting("big", "h1", 5)]
    assert startable(big, [], limits) == ["big"]
    assert startable(big, [InFlight("x", "h1", 1, transferred=False)], limits) == []
    assert startable(big, [InFlight("x", "h2", 2, transferred=False)], limits) == ["big"]


def test_scheduler_bounds_vms_in_flight() -> None:
    limits = Limits(max_in_flight=2, max_disks_per_host=20)
    waiting = [Waiting(n, None, 1) for n in "abcd"]
    assert startable(waiting, [], limits) == ["a", "b"]
    assert startable(waiting, [InFlight("x", None, 1, transferred=True)], limits) == ["a"]
    assert startable(waiting, [InFlight(n, None, 1, transferred=True) for n in "xy"], limits) == []


def _plan(names: list[str]) -> Plan:
    maps = build_maps(None, (), (), "pod", "standard")
    return build_plan([make_vm(name=n) for n in names], maps, PlanOptions(name="p", source="vmx:/x", namespace="ns"))


def test_waves_from_globs_and_selection_in_wave_order() -> None:
    plan = _plan(["web-1", "web-2", "db-1", "misc"])
    plan.waves = build_waves(plan.vms, ["db=db-*", "web=web-*"], ["web=2026-12-05T22:00:00+00:00/"])
    assert [(w.name, w.vms) for w in plan.waves] == [("db", ["db-1"]), ("web", ["web-1", "web-2"])]
    assert plan.waves[1].window == CutoverWindow(start="2026-12-05T22:00:00+00:00", end=None)
    check_waves(plan)
    selection = select(plan)
    assert [(w.name, [v.source_name for v in w.vms]) for w in selection.waves] == [
        ("db", ["db-1"]),
        ("web", ["web-1", "web-2"]),
        (None, ["misc"]),  # in no wave: after the last one
    ]
    only = select(plan, wave="web", patterns=["web-2"])
    assert [(w.name, [v.source_name for v in w.vms]) for w in only.waves] == [("web", ["web-2"])]


def test_wave_mistakes_are_one_line() -> None:
    plan = _plan(["web-1", "db-1"])
    with pytest.raises(InputError, match="no planned VM matches 'app-\\*'"):
        build_waves(plan.vms, ["app=app-*"])
    with pytest.raises(InputError, match="VM web-1 is in two waves: a and b"):
        build_waves(plan.vms, ["a=web-*", "b=*-1"])
    with pytest.raises(InputError, match="expected NAME=GLOB"):
        build_waves(plan.vms, ["web"])
    with pytest.raises(InputError, match="no UTC offset"):
        build_waves(plan.vms, ["a=web-*"], ["a=2026-12-05T22:00:00/"])
    with pytest.raises(InputError, match="ends .* before it starts"):
        build_waves(plan.vms, ["a=web-*"], ["a=2026-12-05T22:00:00Z/2026-12-05T21:00:00Z"])
    plan.waves = [Wave("a", ["nope"])]
    with pytest.raises(InputError, match="wave a names VM nope, which is not in the plan"):
        check_waves(plan)
    with pytest.raises(InputError, match="has no wave 'z'"):
        select(plan, wave="z")
    with pytest.raises(NotFoundError, match="no VM named 'x\\*'"):
        select(plan, patterns=["x*"])


def test_blocked_vms_are_skipped_with_their_reason_unless_forced() -> None:
    plan = _plan(["ok-1", "bad-1"])
    plan.vms[1].concerns.append(Concern("rdm-disk", Severity.CRITICAL, "a raw device mapping"))
    selection = select(plan)
    assert [v.source_name for v in selection.vms] == ["ok-1"]
    assert [(s.vm, s.reason) for s in selection.skipped] == [
        ("bad-1", "blocked by Critical concern(s) rdm-disk (migrate it anyway with --force rdm-disk)")
    ]
    assert [v.source_name for v in select(plan, force=["rdm-disk"]).vms] == ["ok-1", "bad-1"]
