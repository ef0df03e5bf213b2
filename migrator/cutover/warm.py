"""Warm cutover: copy while the source runs, then cut over with only the blocks changed since.

``WARM_STEPS`` (data, run by ``pipeline.run_steps`` as the cold pipeline is) = warm-preflight,
preflight, pre-hook, precopy (rounds every ``interval`` until the cutover is due), source-off,
prestart (the target launched paused, when no guest conversion follows), final-delta, convert-guest,
start (resumes a prestarted target), verify, remove-snapshots, mark-source, post-hook. The cold steps are reused
as they are; the rounds are in ``precopy``. The cutover is due when ``--cutover-at`` passes or
when ``request_cutover`` (``migrator cutover --vm X --now``, from any shell) records a request
in the state store, which the precopy loop polls.

A ``Pacing`` tells the loop when it may copy: alone (`migrator cutover --warm`) every round copies
when it is due; in a `migrator migrate` run, a round (and the cutover) waits for an in-flight slot
of the run, which the VM gives back while it waits for its next round (``migrator.migrate.slots``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from converters.disks.ratelimit import RateLimiter
from core.errors import InputError, MigratorError, NotFoundError, SourceUnreachableError
from migrator.convert.guest import skip_by_default
from migrator.cutover import steps
from migrator.cutover.pipeline import Step, StepResult
from migrator.cutover.ports import PausedStart
from migrator.cutover.precopy import (
    CBT_SNAPSHOT,
    CUTOVER_AT,
    CUTOVER_REQUESTED,
    KEPT_SNAPSHOT,
    NEXT_PRECOPY,
    SNAPSHOT_PREFIX,
    WARM,
    ChangeTracking,
    DiskReader,
    Round,
    RoundContext,
    WarmTarget,
    remove_migrator_snapshots,
    rounds,
    run_round,
)
from migrator.cutover.state import StateStore
from migrator.cutover.steps import CutoverContext

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 3600.0  # seconds between precopy rounds, as Forklift's default (60 min)
SNAPSHOT_CHAIN = "warm-snapshot-chain"  # the concern id of a snapshot chain a warm migration cannot read


@dataclass(frozen=True)
class WarmOptions:
    interval: float = DEFAULT_INTERVAL
    cutover_at: float | None = None  # epoch seconds
    enable_cbt: bool = False
    now: bool = False  # --warm --now: cut over right after the first (full) round
    poll: float = 0.5  # seconds between looks at the state store for a cutover request
    # Seconds between keep-alives of the source's session while the VM waits for its next round (a quarter of
    # the interval when that is shorter): vCenter and ESXi end a session idle for 30 minutes by default, some
    # hardened ones sooner, and rounds are an hour apart by default. One cheap call each.
    keep_alive: float = 300.0


class Pacing(Protocol):
    """When the precopy loop may copy; what it does between rounds. Its methods may raise to stop the VM."""

    def copy(self, number: int | None) -> None:
        """Round ``number`` (None: the cutover, held to the end) is about to copy: return when it may."""

    def idle(self, done: Round, next_at: float) -> None:
        """Round ``done`` is finished and the next is due at ``next_at``: the VM copies nothing until then.
        Called at every look at the clock while it waits (idempotent)."""


class Unpaced:
    """A warm cutover alone: every round copies as soon as it is due."""

    def copy(self, number: int | None) -> None:
        return None

    def idle(self, done: Round, next_at: float) -> None:
        return None


@dataclass
class WarmContext:
    cutover: CutoverContext
    changes: ChangeTracking
    reader: DiskReader
    target: WarmTarget
    options: WarmOptions
    pacing: Pacing = field(default_factory=Unpaced)
    rate_limiter: RateLimiter | None = None

    @property
    def key(self) -> str:
        return self.cutover.key

    @property
    def store(self) -> StateStore:
        return self.cutover.store

    @property
    def announce(self) -> Callable[[str], None]:
        return self.cutover.announce

    def rounds(self) -> RoundContext:
        c = self.cutover
        return RoundContext(
            c.key, c.plan, c.planned, self.changes, self.reader, self.target, c.store, c.announce, self.rate_limiter
        )


# -- steps -------------------------------------------------------------------------------------------


def warm_preflight(w: WarmContext) -> StepResult:
    """CBT on for the VM and every disk (turned on with --enable-cbt), and no snapshot chain of the user's."""
    name = w.cutover.planned.source_name
    live = w.cutover.source.vm_inventory(name)
    theirs = [s.name for s in live.snapshots if not s.name.startswith(SNAPSHOT_PREFIX)]
    if theirs and SNAPSHOT_CHAIN not in w.cutover.options.force:
        raise MigratorError(
            f"Critical concern {SNAPSHOT_CHAIN}: {name} has snapshot(s) {', '.join(theirs)}; a warm migration reads "
            "the base disk a snapshot freezes, which under an earlier snapshot holds that older state: "
            "remove or consolidate them first"
        )
    off = [d.label for d in live.disks if d.cbt_enabled is False]
    if live.cbt_enabled is True and not off:
        return StepResult(detail="changed-block tracking on for the VM and its disks")
    if not w.options.enable_cbt:
        what = "the VM" if live.cbt_enabled is not True else ", ".join(off)
        raise MigratorError(
            f"Critical concern cbt-disabled: changed-block tracking is off for {what} of {name}; "
            "a warm migration needs it: re-run with --enable-cbt"
        )
    w.changes.enable_cbt(name)
    # vSphere starts tracking at the next stun/unstun of the VM: a snapshot taken and removed at once.
    snapshot = w.changes.create_snapshot(name, CBT_SNAPSHOT, quiesce=False)
    w.changes.remove_snapshot(name, snapshot.id)
    w.announce(f"warm-preflight: changed-block tracking turned on for {name} (temporary snapshot {CBT_SNAPSHOT})")
    return StepResult(detail="changed-block tracking turned on (--enable-cbt)")


def cutover_due(w: WarmContext) -> str | None:
    """Why the cutover starts now, or None to keep copying."""
    if w.store.fact(w.key, CUTOVER_REQUESTED) is not None:
        return "requested (--now)"
    at = w.store.fact(w.key, CUTOVER_AT)
    if at is not None and time.time() >= float(at):
        return "--cutover-at reached"
    return None


class SessionKeeper:
    """Keeps the source's session alive while a VM waits between rounds: a keep-alive once ``every`` seconds
    have passed since the session was last used. A keep-alive the server did not answer is logged, not fatal
    (the next one, or the next round, tells); a session that has ended stops the VM (SourceError)."""

    def __init__(self, changes: ChangeTracking, every: float) -> None:
        self.changes = changes
        self.every = every
        self.last_used = time.monotonic()

    def used(self) -> None:
        self.last_used = time.monotonic()

    def idle(self) -> None:
        if time.monotonic() - self.last_used < self.every:
            return
        try:
            self.changes.keep_alive()
        except SourceUnreachableError as error:
            log.warning("%s", error)
        self.used()


def precopy(w: WarmContext) -> StepResult:
    c = w.cutover
    w.target.prepare(c.plan, c.planned)
    ctx = w.rounds()
    precopies = [r for r in rounds(w.store, w.key) if r.kind == "precopy"]
    if not precopies or precopies[-1].finished_at is None:
        number = precopies[-1].number if precopies else 1
        w.pacing.copy(number)
        run_round(ctx, number, "precopy")  # the first (full) copy, or the round a crash interrupted
    session = SessionKeeper(w.changes, min(w.options.keep_alive, w.options.interval / 4))
    while (why := cutover_due(w)) is None:
        last = [r for r in rounds(w.store, w.key) if r.kind == "precopy"][-1]
        next_at = last.started_at + w.options.interval
        if w.store.fact(w.key, NEXT_PRECOPY) != next_at:
            w.store.set_fact(w.key, NEXT_PRECOPY, next_at)
        if time.time() >= next_at:
            w.pacing.copy(last.number + 1)
            run_round(ctx, last.number + 1, "precopy")
            session.used()
            continue
        w.pacing.idle(last, next_at)
        session.idle()
        time.sleep(max(0.0, min(w.options.poll, next_at - time.time())))
    w.pacing.copy(None)  # the cutover: source off, final delta, start, verify, all under one slot
    w.store.set_fact(w.key, NEXT_PRECOPY, None)
    done = [r for r in rounds(w.store, w.key) if r.kind == "precopy"]
    moved = sum(r.bytes for r in done)
    return StepResult(bytes_moved=moved, detail=f"{len(done)} precopy round(s); cutover {why}")


def prestart(w: WarmContext) -> StepResult:
    """Launch the target paused now, so that its start (the runtime, QEMU) overlaps the final delta: `start`
    then only resumes it. Only where nothing changes the disks or the VM after the delta but the delta
    itself: no guest conversion (virt-v2v rewrites both), and a target that can start paused."""
    c = w.cutover
    skip = skip_by_default() if c.options.skip_conversion is None else c.options.skip_conversion
    if not steps.should_run(c):
        return StepResult(detail="not started: the source was not running")
    if not skip:
        return StepResult(detail="started after the guest conversion")
    if not isinstance(c.target, PausedStart):
        return StepResult(detail=f"started after the final delta ({c.target.description} starts no VM paused)")
    c.target.start_paused(c.plan, c.planned)
    return StepResult(detail="launched paused: its start overlaps the final delta, `start` resumes it")


def final_delta(w: WarmContext) -> StepResult:
    recorded = rounds(w.store, w.key)
    final = next((r for r in recorded if r.kind == "final"), None)
    number = final.number if final else max(r.number for r in recorded) + 1
    done = run_round(w.rounds(), number, "final")
    return StepResult(bytes_moved=done.bytes, detail=f"changes since the last precopy, {len(done.disks or {})} disk(s)")


def convert_guest(w: WarmContext) -> StepResult:
    """virt-v2v on the images once the final delta is in them (nothing is copied into them afterwards)."""
    c = w.cutover
    skip = skip_by_default() if c.options.skip_conversion is None else c.options.skip_conversion
    detail = w.target.convert_guest(c.plan, c.planned, skip=skip, announce=c.announce)
    if detail is None:
        return steps.convert_guest(c)  # the local target converts its own output directory's images
    c.store.set_fact(c.key, "guest", detail)
    return StepResult(detail=detail)


def remove_snapshots(w: WarmContext) -> StepResult:
    removed = remove_migrator_snapshots(w.changes, w.cutover.planned.source_name)
    w.store.set_fact(w.key, KEPT_SNAPSHOT, None)
    return StepResult(detail=f"removed {', '.join(removed)}" if removed else "no snapshot left")


def _cold(run: Callable[[CutoverContext], StepResult]) -> Callable[[WarmContext], StepResult]:
    return lambda w: run(w.cutover)


WARM_STEPS: tuple[Step[WarmContext], ...] = (
    Step("warm-preflight", warm_preflight, "changed-block tracking on, no snapshot chain of the user's"),
    Step("preflight", _cold(steps.preflight), "check the plan against the live source and the target"),
    Step("pre-hook", _cold(steps.pre_hook), "run the pre-cutover hook"),
    Step("precopy", precopy, "copy while the source runs, every precopy interval, until the cutover"),
    Step("source-off", _cold(steps.source_off), "record the power state, shut the source down", touches_source=True),
    Step("prestart", prestart, "launch the target paused, while the final delta is copied", touches_source=True),
    Step("final-delta", final_delta, "final snapshot, copy what changed since the last round", touches_source=True),
    Step("convert-guest", convert_guest, "make the guest OS run on virtio (virt-v2v)", touches_source=True),
    Step("start", _cold(steps.start_target), "create the VirtualMachine and start it", touches_source=True),
    Step("verify", _cold(steps.verify), "wait for Running and check the guest", touches_source=True),
    Step("remove-snapshots", remove_snapshots, "remove the final snapshot", touches_source=True),
    Step("mark-source", _cold(steps.mark_source), "mark the source as migrated, leave it off", touches_source=True),
    Step("post-hook", _cold(steps.post_hook), "run the post-cutover hook", touches_source=True),
)


def cleanup(w: WarmContext) -> list[str]:
    """After a failure or a rollback: remove every snapshot this product took. Returns what it did."""
    try:
        removed = remove_migrator_snapshots(w.changes, w.cutover.planned.source_name)
    except MigratorError as error:
        return [f"snapshots of {w.cutover.planned.source_name} could not be removed: {error.message}"]
    w.store.set_fact(w.key, KEPT_SNAPSHOT, None)
    return [f"removed snapshot(s) {', '.join(removed)}"] if removed else ["no migrator snapshot left"]


def begin(w: WarmContext) -> None:
    """Record that this migration is warm, with its schedule (the loop and `status` read them)."""
    w.store.set_fact(w.key, WARM, {"interval": w.options.interval, "cutover_at": w.options.cutover_at})
    w.store.set_fact(w.key, CUTOVER_AT, w.options.cutover_at)
    if w.options.now and w.store.fact(w.key, CUTOVER_REQUESTED) is None:
        w.store.set_fact(w.key, CUTOVER_REQUESTED, time.time())


def request_cutover(store: StateStore, vm: str) -> str:
    """`migrator cutover --vm X --now`: tell the running precopy loop of ``vm`` to cut over. Returns one line."""
    migration = store.get(vm)
    if migration is None or WARM not in migration.facts:
        raise NotFoundError(
            f"no warm cutover of {vm} recorded in {store.path}: start one with `cutover --warm`; a VM that a "
            "running `migrate` has not started yet can be asked once its precopy runs (`migrator status --vm "
            f"{vm}`)"
        )
    if migration.status in ("completed", "rolled_back"):
        raise InputError(f"the warm cutover of {vm} is {migration.status.replace('_', ' ')}: nothing to cut over")
    if migration.done("precopy"):
        return f"the warm cutover of {vm} is already past its precopy rounds"
    if migration.facts.get(CUTOVER_REQUESTED) is None:
        store.set_fact(vm, CUTOVER_REQUESTED, time.time())
    return f"cutover of {vm} requested: the precopy loop cuts over after the round under way"
