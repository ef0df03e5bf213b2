"""A migration's state transitions: begin (or resume), run the cutover, complete, roll back.

The ``migrator cutover`` command only parses flags and prints; it, the estate-wide ``migrate``
command and the in-cluster Migration controller all move a VM's migration record through these
functions, so the rules live once: a rolled-back run starts over, a recorded run to another target
is refused, a run that got through every step is completed, a rollback is recorded.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path

from core.errors import InputError, Interrupted, MigratorError, NotFoundError, TargetError
from migrator.cutover.pipeline import StepFailed, run_steps
from migrator.cutover.ports import ClusterAccess
from migrator.cutover.state import Migration, StateStore, only_one_run, run_alive
from migrator.cutover.steps import CUTOVER_STEPS, CutoverContext, TargetNotStopped, rollback
from migrator.cutover.warm import WARM_STEPS, WarmContext
from migrator.cutover.warm import begin as begin_warm
from migrator.cutover.warm import cleanup as cleanup_warm


class CutoverFailed(MigratorError):
    exit_code = 4


class CutoverInterrupted(Interrupted):
    """Ctrl-C or SIGTERM: the run stopped where it was, recorded so that a re-run resumes."""


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM ends a run as Ctrl-C does (KeyboardInterrupt), so it is recorded instead of lost."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def record_interruption(ctx: CutoverContext, step: str | None = None) -> CutoverInterrupted:
    """Record that the run was interrupted (in ``step``, else the step under way); the one line to print."""
    migration = ctx.store.get(ctx.key)
    where = step or (migration.current_step if migration else None) or "preflight"
    ctx.store.set_fact(ctx.key, "interrupted", {"step": where, "at": time.time()})
    ctx.store.set_status(ctx.key, "interrupted", error=f"interrupted in step {where}")
    recorded = ctx.store.get(ctx.key)
    return CutoverInterrupted(recorded.where if recorded and recorded.where else f"interrupted in step {where}")


def downtime_line(migration: Migration) -> str:
    """The downtime, named: until the target was verified, or until a rollback brought the source back."""
    if migration.downtime_to_source_back_seconds is not None:
        return f"downtime {migration.downtime_to_source_back_seconds:.1f}s (source off → source back on)"
    if migration.downtime_to_verified_seconds is not None:
        return f"downtime {migration.downtime_to_verified_seconds:.1f}s (source off → target verified)"
    return "downtime not measured"


def exclusive_run(store: StateStore, key: str) -> AbstractContextManager[None]:
    """One cutover (or rollback) of a VM at a time: two would race on the source's power."""
    return only_one_run(store.state_dir, key)


def where(store: StateStore, recorded: Migration) -> str | None:
    """Where an unfinished run stands; a "running" record whose process is gone (killed) says so too."""
    if recorded.where is not None:
        return recorded.where
    if recorded.status == "running" and not run_alive(store.state_dir, recorded.vm):
        step = recorded.current_step or "preflight"
        off = "source is off, " if recorded.source_off_since is not None else ""
        return f"{off}the run ended in step {step} without a word (killed?): re-run to resume" + (
            ", or roll back" if off else ""
        )
    return None


CLUSTER_ACCESS = "cluster_access"  # the fact that records a cluster target's kubeconfig and context


@dataclass(frozen=True)
class RecordedEndpoints:
    """Where a recorded cutover went: what `cutover --rollback --vm NAME` alone needs."""

    source: str | None
    output_dir: Path | None  # the local target's directory
    namespace: str | None  # the cluster target's namespace
    cluster_access: ClusterAccess | None = None  # the cluster target's kubeconfig and context


def recorded_endpoints(store: StateStore, vm: str) -> RecordedEndpoints:
    migration = store.get(vm)
    if migration is None:
        raise NotFoundError(f"no cutover recorded for VM {vm}: give --plan or --source and the target")
    kind, _, where = (migration.target or "").partition(":")
    access = migration.facts.get(CLUSTER_ACCESS)
    return RecordedEndpoints(
        source=migration.source,
        output_dir=Path(where) if kind == "local" else None,
        namespace=where if kind == "cluster" else None,
        cluster_access=ClusterAccess(**access) if kind == "cluster" and access else None,
    )


def log_path(store: StateStore, key: str) -> Path:
    """The migration's log file, in the state directory (named in `migrator status`)."""
    return store.state_dir / "logs" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.log"


def begin(ctx: CutoverContext) -> Migration:
    """Start the VM's migration record, or resume the recorded one when it goes to the same target."""
    key, store = ctx.key, ctx.store
    existing = store.get(key)
    if existing is not None and existing.status == "rolled_back":
        store.forget(key)  # a rolled-back cutover starts over from preflight
        existing = None
    if existing is not None and existing.target not in (None, ctx.target.description):
        raise InputError(
            f"VM {key} has a recorded cutover to {existing.target}, not {ctx.target.description}: "
            f"finish or roll it back first (migrator cutover --rollback --vm {key})"
        )
    migration = store.begin(key, plan=ctx.plan.name, source=ctx.plan.source, target=ctx.target.description)
    store.set_fact(key, "target_name", ctx.planned.target_name)
    store.set_fact(key, "interrupted", None)
    store.set_fact(key, "log_file", str(log_path(store, key)))
    if ctx.cluster_access is not None:
        store.set_fact(key, CLUSTER_ACCESS, asdict(ctx.cluster_access))
    return store.get(key) or migration


def cut_over(ctx: CutoverContext, *, rollback_on_failure: bool, warm: WarmContext | None = None) -> Migration:
    """Begin (or resume) and run every cutover step (``WARM_STEPS`` with a warm context); the completed
    record, or CutoverFailed (recorded). A failed warm run removes every snapshot it took."""
    key, store = ctx.key, ctx.store
    begin(ctx)
    ctx.announce(f"{'warm ' if warm else ''}cutover of {key} to {ctx.target.description} as {ctx.planned.target_name}")
    try:
        if warm is not None:
            begin_warm(warm)
            migration = run_steps(key, WARM_STEPS, warm, store, announce=ctx.announce)
        else:
            migration = run_steps(key, CUTOVER_STEPS, ctx, store, announce=ctx.announce)
    except (KeyboardInterrupt, Interrupted):  # Ctrl-C, SIGTERM; or the disk engine's "transfer interrupted"
        raise record_interruption(ctx) from None
    except StepFailed as failed:
        for line in cleanup_warm(warm) if warm is not None else []:
            ctx.announce(f"cleanup: {line}")
        if not failed.source_touched:
            raise CutoverFailed(f"cutover of {key} stopped: {failed.message}; the source was not touched") from None
        if not rollback_on_failure:
            raise CutoverFailed(
                f"cutover of {key} failed: {failed.message}; the source is off: re-run to resume, "
                f"or roll back with `migrator cutover --rollback --vm {key}`"
            ) from None
        actions = record_rollback(ctx)
        recorded = store.get(key)
        downtime = f"; {downtime_line(recorded)}" if recorded else ""
        raise CutoverFailed(
            f"cutover of {key} failed: {failed.message}; rolled back ({'; '.join(actions)}){downtime}"
        ) from None
    return complete(ctx, migration)


def complete(ctx: CutoverContext, migration: Migration) -> Migration:
    """Mark a migration whose every step is done as completed (once)."""
    if migration.status == "completed":
        return migration
    ctx.store.set_status(ctx.key, "completed")
    return ctx.store.get(ctx.key) or migration


def record_rollback(ctx: CutoverContext, warm: WarmContext | None = None) -> list[str]:
    """Roll back (stop the target, restore the source; a warm run's snapshots removed) and record it;
    what was done, one line each."""
    try:
        actions = rollback(ctx) + (cleanup_warm(warm) if warm is not None else [])
    except (KeyboardInterrupt, Interrupted):
        raise record_interruption(ctx, "rollback") from None
    except TargetNotStopped as error:
        ctx.store.set_status(ctx.key, "failed", error=error.message)
        raise CutoverFailed(error.message) from None
    except MigratorError as error:
        ctx.store.set_status(ctx.key, "failed", error=f"rollback failed: {error.message}")
        raise CutoverFailed(f"rollback of {ctx.key} failed: {error.message}") from None
    for action in actions:
        ctx.announce(f"rollback: {action}")
    recorded = ctx.store.get(ctx.key)
    ctx.store.set_status(ctx.key, "rolled_back", error=recorded.error if recorded else None)
    return actions


def roll_back(ctx: CutoverContext, warm: WarmContext | None = None) -> list[str]:
    """Roll back the recorded cutover of ``ctx``'s VM; refused when none is recorded, or to another target."""
    migration = ctx.store.get(ctx.key)
    if migration is None:
        raise NotFoundError(f"no cutover recorded for VM {ctx.key} in {ctx.store.path}: nothing to roll back")
    if migration.target not in (None, ctx.target.description):
        raise TargetError(f"the cutover of {ctx.key} went to {migration.target}, not {ctx.target.description}")
    return record_rollback(ctx, warm)
