"""`migrator migrate`: every selected VM of a plan through the cutover pipeline, concurrently, wave by wave.

The coordinator (the main thread) decides which VM starts when (``scheduler.startable``), starts
each in a worker thread (``worker.migrate_vm``), and ticks the view. Waves run one after the
other; a wave with a cutover window waits for its start and starts no VM after its end. A warm VM
starts its precopy rounds as soon as its wave begins and cuts over when the run's ``--cutover-at``
passes, else when its wave's window opens, else on `migrator cutover --vm X --now`; between rounds
it gives its in-flight slot back, and the coordinator grants it one again for its next round or
its cutover, before any VM not started yet (``slots``). Every
step of every VM is recorded in the state store before and after it runs, so a coordinator
killed at any moment resumes each unfinished VM from its recorded step on the next run, and
leaves the VMs it completed alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from converters.disks.ratelimit import RateLimiter
from core.plan import PlannedVM
from migrator.convert import plans
from migrator.cutover import migration
from migrator.cutover.state import StateStore, default_state_dir
from migrator.cutover.steps import CutoverOptions
from migrator.migrate import cancel
from migrator.migrate.meter import VmMeter, shared_bucket
from migrator.migrate.progress import RoundEvent, View, VmProgress, make_view
from migrator.migrate.scheduler import InFlight, Limits, Waiting, startable
from migrator.migrate.selection import Selection, Skip, WaveRun, select
from migrator.migrate.slots import SlotPacing, Slots
from migrator.migrate.summary import ALREADY, INTERRUPTED, SKIPPED, Outcome
from migrator.migrate.worker import RunEnv, StopSignal, TargetSpec, WarmRun, WarmSettings, is_warm, migrate_vm
from migrator.planning.waves import parse_time
from migrator.sources import SourceOptions

TICK = 1.0  # seconds between progress ticks
POLL = 0.25  # seconds between looks at the workers
TRANSFER_STEPS = ("transfer", "final-delta")  # once done, a VM copies no more from its host


@dataclass(frozen=True)
class MigrateRequest:
    plan_path: Path
    target: TargetSpec
    patterns: tuple[str, ...] = ()
    wave: str | None = None
    force: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    max_rate: float | None = None  # bytes per second, for every transfer of the run together
    state_dir: Path | None = None
    source_options: SourceOptions = field(default_factory=SourceOptions)
    options: CutoverOptions = field(default_factory=CutoverOptions)
    rollback_on_failure: bool = False
    progress: str = "auto"
    warm: WarmSettings = field(default_factory=WarmSettings)


@dataclass
class _WarmState:
    rounds: int = 0
    next_at: float | None = None


class Tracker:
    """A View in front of the real one: remembers each VM's step, which the scheduler needs."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.lock = threading.Lock()
        self.current: dict[str, str | None] = {}
        self.transferred: set[str] = set()
        self.warm: dict[str, _WarmState] = {}

    def skipped(self, skip: Skip) -> None:
        self.view.skipped(skip)

    def wave(self, name: str | None, status: str, detail: str = "") -> None:
        self.view.wave(name, status, detail)

    def started(self, vm: str, bytes_total: int) -> None:
        with self.lock:
            self.current[vm] = None
        self.view.started(vm, bytes_total)

    def step(self, vm: str, step: str, status: str, detail: str | None = None) -> None:
        with self.lock:
            self.current[vm] = step
            if step in TRANSFER_STEPS and status == "done":
                self.transferred.add(vm)
        self.view.step(vm, step, status, detail)

    def line(self, vm: str, text: str) -> None:
        self.view.line(vm, text)

    def round(self, event: RoundEvent) -> None:
        with self.lock:
            state = self.warm.setdefault(event.vm, _WarmState())
            if event.status == "done" and event.number is not None:
                state.rounds, state.next_at = event.number, event.next_at
            else:
                state.next_at = None
        self.view.round(event)

    def warm_state(self, vm: str) -> _WarmState | None:
        with self.lock:
            state = self.warm.get(vm)
            return None if state is None else _WarmState(state.rounds, state.next_at)

    def tick(self, in_flight: Sequence[VmProgress]) -> None:
        self.view.tick(in_flight)

    def finished(self, outcome: Outcome) -> None:
        self.view.finished(outcome)

    def close(self, outcomes: Sequence[Outcome]) -> None:
        self.view.close(outcomes)

    def step_of(self, vm: str) -> str | None:
        with self.lock:
            return self.current.get(vm)

    def has_transferred(self, vm: str) -> bool:
        with self.lock:
            return vm in self.transferred


@dataclass
class _Running:
    planned: PlannedVM
    future: Future[Outcome]
    meter: VmMeter
    bytes_total: int
    warm: bool = False


def _bytes_total(planned: PlannedVM) -> int:
    return planned.transfer_bytes or sum(d.capacity_bytes for d in planned.disks)


def _named(planned: PlannedVM, patterns: Sequence[str]) -> bool:
    return any(p in (planned.source_name, planned.target_name) for p in patterns)


class Coordinator:
    def __init__(self, request: MigrateRequest) -> None:
        self.request = request
        self.state_dir = request.state_dir or default_state_dir()
        self.plan = plans.load_plan(request.plan_path)
        self.selection: Selection = select(self.plan, request.patterns, request.wave, request.force)
        self.outcomes: list[Outcome] = []
        self.interrupted = threading.Event()
        self.bucket: RateLimiter = shared_bucket(request.max_rate)
        self.env = RunEnv(
            plan=self.plan,
            plan_path=request.plan_path,
            source_options=request.source_options,
            target=request.target,
            state_dir=self.state_dir,
            options=request.options,
            rollback_on_failure=request.rollback_on_failure,
            warm=request.warm,
        )
        self.slots = Slots()
        self.store = StateStore(self.state_dir)
        self.tracker = Tracker(make_view(request.progress, sum(_bytes_total(v) for v in self.selection.vms)))

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> list[Outcome]:
        try:
            for skip in self.selection.skipped:
                self.tracker.skipped(skip)
                self.outcomes.append(Outcome(skip.vm, SKIPPED, error=skip.reason))
            # SIGTERM (a Job's pod being deleted) ends the run as Ctrl-C does: every VM stops at its next
            # chunk or step with its state recorded, and the pool waits for them before the summary.
            # A thread per VM under way: warm VMs waiting for their next round hold a thread, not a slot.
            workers = max(self.request.limits.max_in_flight, len(self.selection.vms))
            with (
                migration.interruptible(),
                ThreadPoolExecutor(workers, thread_name_prefix="migrate") as pool,
            ):
                try:
                    for wave in self.selection.waves:
                        if self.interrupted.is_set():
                            self._not_started(wave.vms, wave.name, "the run was interrupted: re-run to resume")
                            continue
                        self._run_wave(pool, wave)
                except KeyboardInterrupt:  # outside the wait for the workers: they stop all the same
                    self.interrupted.set()
        finally:
            self.tracker.close(self.outcomes)
            self.store.close()
        return self.outcomes

    def _finish(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self.tracker.finished(outcome)

    def _not_started(self, vms: Sequence[PlannedVM], wave: str | None, reason: str) -> None:
        for planned in vms:
            outcome = INTERRUPTED if self.interrupted.is_set() else SKIPPED
            self._finish(Outcome(planned.source_name, outcome, error=reason, wave=wave))

    def _to_run(self, wave: WaveRun) -> list[PlannedVM]:
        """The wave's VMs this run moves: not those completed earlier, nor those cancelled earlier."""
        pending = []
        for planned in wave.vms:
            record = self.store.get(planned.source_name)
            if record is not None and record.status == "completed":
                self._finish(
                    Outcome(
                        planned.source_name,
                        ALREADY,
                        downtime_seconds=record.downtime_seconds,
                        bytes_moved=record.bytes_moved,
                        wave=wave.name,
                    )
                )
            elif (
                record is not None
                and record.status == "rolled_back"
                and record.facts.get("cancelled_at")
                and not _named(planned, self.request.patterns)
            ):
                self._finish(
                    Outcome(
                        planned.source_name,
                        SKIPPED,
                        error=f"cancelled earlier: migrate it again with --vm {planned.source_name}",
                        wave=wave.name,
                    )
                )
            else:
                pending.append(planned)
        return pending

    def _opens(self, wave: WaveRun) -> float | None:
        start = wave.window.start if wave.window else None
        return parse_time(start, "window start").timestamp() if start else None

    def _window_closed(self, wave: WaveRun) -> bool:
        end = wave.window.end if wave.window else None
        return end is not None and datetime.now(UTC) >= parse_time(end, "window end")

    def _closed_reason(self, wave: WaveRun) -> Callable[[], str | None]:
        def reason() -> str | None:
            return f"the cutover window of wave {wave.name} closed" if self._window_closed(wave) else None

        return reason

    def _warm(self, planned: PlannedVM) -> bool:
        return is_warm(planned, self.store.get(planned.source_name), self.request.warm)

    def _run_wave(self, pool: ThreadPoolExecutor, wave: WaveRun) -> None:
        pending = self._to_run(wave)
        if not pending:
            return
        self.tracker.wave(wave.name, "started", f"{len(pending)} VM(s)")
        if self._window_closed(wave):
            reason = f"the cutover window of wave {wave.name} closed at {wave.window.end if wave.window else '?'}"
            self._not_started(pending, wave.name, reason)
            return
        opens = self._opens(wave)
        warm = {v.source_name for v in pending if self._warm(v)}
        if opens is not None and time.time() < opens and any(v.source_name not in warm for v in pending):
            start = wave.window.start if wave.window else ""
            meanwhile = f"; its {len(warm)} warm VM(s) precopy meanwhile" if warm else ""
            self.tracker.wave(wave.name, "waiting", f"its cutover window opens at {start}{meanwhile}")
        running: dict[str, _Running] = {}
        last_tick = 0.0
        while pending or running:
            if pending and (self.interrupted.is_set() or self._window_closed(wave)):
                reason = (
                    "the run was interrupted: re-run to resume"
                    if self.interrupted.is_set()
                    else f"the cutover window of wave {wave.name} closed"
                )
                self._not_started(pending, wave.name, reason)
                pending = []
            # Warm VMs start their precopy at once; cold ones when the window opens.
            ready = [v for v in pending if v.source_name in warm or opens is None or time.time() >= opens]
            self._start(pool, wave, pending, ready, running, warm, opens)
            try:
                if running:
                    done, _ = wait([r.future for r in running.values()], timeout=POLL, return_when=FIRST_COMPLETED)
                else:  # only VMs waiting for the window
                    self.interrupted.wait(POLL)
                    done = set()
            except KeyboardInterrupt:
                self.interrupted.set()  # every worker stops at its next chunk or step, its state recorded
                continue
            for name in [n for n, r in running.items() if r.future in done]:
                outcome = running.pop(name).future.result()
                self.slots.give_back(name)
                cancel.clear(self.state_dir, name)
                self._finish(Outcome(**{**outcome.__dict__, "wave": wave.name}))
            if time.monotonic() - last_tick >= TICK:
                last_tick = time.monotonic()
                self.tracker.tick([self._progress(name, r) for name, r in running.items()])
        self.tracker.wave(wave.name, "done")

    def _start(
        self,
        pool: ThreadPoolExecutor,
        wave: WaveRun,
        pending: list[PlannedVM],
        ready: list[PlannedVM],
        running: dict[str, _Running],
        warm: set[str],
        opens: float | None,
    ) -> None:
        """Grant slots: to warm VMs asking for theirs back first, then to VMs not started yet."""
        in_flight = [
            InFlight(n, running[n].planned.vm.host, len(running[n].planned.disks), self._transferred(n))
            for n in self.slots.holders()
            if n in running
        ]
        asking = [a for a in self.slots.asking() if a.vm in running]
        waiting = asking + [Waiting(v.source_name, v.vm.host, len(v.disks)) for v in ready]
        asked = {a.vm for a in asking}
        for name in startable(waiting, in_flight, self.request.limits):
            if name in asked:
                self.slots.grant(name)
                continue
            planned = next(v for v in pending if v.source_name == name)
            pending.remove(planned)
            stop = StopSignal(self.state_dir, name, self.interrupted.is_set)
            meter = VmMeter(self.bucket, stop)
            total = _bytes_total(planned)
            warm_run = None
            if name in warm:
                need = Waiting(name, planned.vm.host, len(planned.disks))
                cutover_at = self.request.warm.cutover_at or opens
                pacing = SlotPacing(need, self.slots, meter.check, self.tracker, closed=self._closed_reason(wave))
                warm_run = WarmRun(pacing, cutover_at)
            self.slots.take(name)
            self.tracker.started(name, total)
            future = pool.submit(migrate_vm, planned, self.env, self.tracker, meter, stop, warm_run)
            running[name] = _Running(planned, future, meter, total, warm=warm_run is not None)

    def _transferred(self, vm: str) -> bool:
        if self.tracker.has_transferred(vm):
            return True
        record = self.store.get(vm)
        return record is not None and any(record.done(step) for step in TRANSFER_STEPS)

    def _progress(self, vm: str, running: _Running) -> VmProgress:
        done = running.meter.bytes
        state = self.tracker.warm_state(vm) if running.warm else None
        return VmProgress(
            vm=vm,
            step=self.tracker.step_of(vm),
            bytes_done=done,
            bytes_total=max(running.bytes_total, done),
            rate=running.meter.rate(),
            rounds=None if state is None and not running.warm else (state.rounds if state else 0),
            next_round_at=state.next_at if state else None,
        )


def migrate(request: MigrateRequest) -> list[Outcome]:
    return Coordinator(request).run()
