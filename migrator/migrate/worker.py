"""One VM of a `migrate` run through the durable cutover pipeline, in a worker thread.

The same record transitions as `migrator cutover` (``migrator.cutover.migration``), the same
steps (``CUTOVER_STEPS``), each wrapped to report its start and end to the run's view and to
stop at the step boundary when the VM is cancelled or the run interrupted; inside the
transfer, the VM's meter stops it at the next chunk. A cancelled VM is rolled back (target
stopped, source powered back on if it was on) and its target removed. Each worker has its own
source session and state-store connection (neither pyVmomi's stub nor sqlite3 is shared
between threads).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from core.errors import InputError, MigratorError
from core.plan import Plan, PlannedVM
from migrator.cutover import migration
from migrator.cutover.pipeline import Step, StepFailed, StepResult, run_steps
from migrator.cutover.ports import CutoverSource, CutoverTarget
from migrator.cutover.state import StateStore
from migrator.cutover.steps import CUTOVER_STEPS, CutoverContext, CutoverOptions
from migrator.cutover.targets import DiskOrigin
from migrator.migrate import cancel
from migrator.migrate.meter import Stopped, VmMeter
from migrator.migrate.progress import View
from migrator.migrate.summary import CANCELLED, FAILED, INTERRUPTED, MIGRATED, Outcome
from migrator.sources import SourceOptions, open_source, split_source

CANCELLED_ERROR = "cancelled by request"
INTERRUPTED_ERROR = "the run was interrupted"


@dataclass(frozen=True)
class TargetSpec:
    """Where the VMs go: this machine (``output_dir``) or a cluster (``kubeconfig`` + namespace)."""

    output_dir: Path | None = None
    kubeconfig: str | None = None
    namespace: str | None = None
    volumes_dir: Path | None = None  # in a Migration's Job: each claim mounted at <dir>/<claim>/

    def build(self, plan: Plan, origin: DiskOrigin, skip_conversion: bool | None = None) -> CutoverTarget:
        if self.output_dir is not None:
            from migrator.cutover.targets.local import LocalTarget

            return LocalTarget(self.output_dir, origin)
        from migrator.cutover.targets.cluster import ClusterTarget

        return ClusterTarget(
            self.kubeconfig, self.namespace or plan.target_namespace, origin, skip_conversion=skip_conversion
        )


@dataclass(frozen=True)
class RunEnv:
    """What every worker of a run shares (no credentials: the password stays where options say)."""

    plan: Plan
    plan_path: Path
    source_options: SourceOptions
    target: TargetSpec
    state_dir: Path
    options: CutoverOptions
    rollback_on_failure: bool = False


class StopSignal:
    """Why a VM must stop now, if it must: its cancel request, or the whole run interrupted."""

    def __init__(self, state_dir: Path, vm: str, interrupted: Callable[[], bool]) -> None:
        self.state_dir, self.vm, self.interrupted = state_dir, vm, interrupted

    def __call__(self) -> str | None:
        if cancel.requested(self.state_dir, self.vm):
            return CANCELLED_ERROR
        if self.interrupted():
            return INTERRUPTED_ERROR
        return None


@contextlib.contextmanager
def _source(spec: str, options: SourceOptions) -> Iterator[CutoverSource]:
    if split_source(spec)[0] != "vsphere":
        raise InputError(f"migrate needs a live vSphere source (vsphere://USER@HOST), not {spec!r}")
    source = open_source(spec, options)
    try:
        yield source  # type: ignore[misc]  # the vSphere adapter satisfies CutoverSource
    finally:
        source.close()


def observed_steps(vm: str, view: View, meter: VmMeter) -> tuple[Step[CutoverContext], ...]:
    """CUTOVER_STEPS, each checking for a stop before it runs and reporting its start and end."""

    def wrap(step: Step[CutoverContext]) -> Step[CutoverContext]:
        def run(ctx: CutoverContext) -> StepResult | None:
            meter.check()
            view.step(vm, step.name, "started")
            result = step.run(ctx)
            view.step(vm, step.name, "done", result.detail if result else None)
            return result

        return replace(step, run=run)

    return tuple(wrap(step) for step in CUTOVER_STEPS)


def _outcome(store: StateStore, vm: str, outcome: str, started: float, error: str | None = None) -> Outcome:
    record = store.get(vm)
    return Outcome(
        vm=vm,
        outcome=outcome,
        downtime_seconds=record.downtime_seconds if record else None,
        bytes_moved=record.bytes_moved if record else 0,
        duration_seconds=time.monotonic() - started,
        error=error,
    )


def migrate_vm(planned: PlannedVM, env: RunEnv, view: View, meter: VmMeter, stop: StopSignal) -> Outcome:
    """Cut one VM over (resuming its recorded steps); never raises for the VM's own failures."""
    started = time.monotonic()
    vm = planned.source_name
    store = StateStore(env.state_dir)
    try:
        try:
            return _run(planned, env, view, meter, stop, store, started)
        except MigratorError as error:
            return _outcome(store, vm, FAILED, started, error.message)
        except Exception as error:  # a bug: this VM fails, the others go on
            return _outcome(store, vm, FAILED, started, f"internal error: {type(error).__name__}: {error}")
    finally:
        store.close()


def _run(
    planned: PlannedVM, env: RunEnv, view: View, meter: VmMeter, stop: StopSignal, store: StateStore, started: float
) -> Outcome:
    vm = planned.source_name
    origin = DiskOrigin(
        plan_path=env.plan_path,
        source_options=env.source_options,
        volumes_dir=env.target.volumes_dir,
        rate_limiter=meter,
    )
    options = replace(
        env.options,
        pre_hook=env.options.pre_hook or env.plan.hooks.get("pre"),
        post_hook=env.options.post_hook or env.plan.hooks.get("post"),
    )
    with _source(env.plan.source, env.source_options.pinned_to(env.plan.source_thumbprint)) as live:
        target = env.target.build(env.plan, origin, env.options.skip_conversion)
        ctx = CutoverContext(env.plan, planned, live, target, store, options, announce=lambda line: view.line(vm, line))
        with migration.exclusive_run(store, ctx.key):
            reason = stop()
            if reason == CANCELLED_ERROR and store.get(vm) is None:
                cancel.clear(env.state_dir, vm)
                return _outcome(store, vm, CANCELLED, started, f"{CANCELLED_ERROR} before it started")
            migration.begin(ctx)
            try:
                record = run_steps(ctx.key, observed_steps(vm, view, meter), ctx, store, announce=ctx.announce)
            except StepFailed as failed:
                return _failed(ctx, env, view, stop, failed, started)
            migration.complete(ctx, record)
            return _outcome(store, vm, MIGRATED, started)


def _failed(
    ctx: CutoverContext, env: RunEnv, view: View, stop: StopSignal, failed: StepFailed, started: float
) -> Outcome:
    vm, store = ctx.key, ctx.store
    view.step(vm, failed.step, "failed", failed.message)
    reason = stop()
    if reason == CANCELLED_ERROR:
        actions = migration.record_rollback(ctx)
        actions.append(ctx.target.remove(ctx.plan, ctx.planned))
        ctx.announce(f"rollback: {actions[-1]}")
        store.set_status(vm, "rolled_back", error=CANCELLED_ERROR)
        store.set_fact(vm, "cancelled_at", time.time())
        cancel.clear(env.state_dir, vm)
        return _outcome(store, vm, CANCELLED, started, f"{CANCELLED_ERROR} in step {failed.step}: rolled back")
    if reason == INTERRUPTED_ERROR:
        where = migration.record_interruption(ctx, failed.step).message
        return _outcome(store, vm, INTERRUPTED, started, f"{where}: re-run to resume")
    if failed.source_touched and env.rollback_on_failure:
        actions = migration.record_rollback(ctx)
        return _outcome(store, vm, FAILED, started, f"{failed.message}; rolled back ({'; '.join(actions)})")
    hint = "re-run to resume, or roll back" if failed.source_touched else "the source was not touched"
    return _outcome(store, vm, FAILED, started, f"{failed.message}; {hint}")


__all__ = ["RunEnv", "StopSignal", "Stopped", "TargetSpec", "migrate_vm"]
