"""One VM of a `migrate` run through the durable cutover pipeline, in a worker thread.

The same record transitions as `migrator cutover` (``migrator.cutover.migration``), the same
steps (``CUTOVER_STEPS``), each wrapped to report its start and end to the run's view and to
stop at the step boundary when the VM is cancelled or the run interrupted; inside the
transfer, the VM's meter stops it at the next chunk. A cancelled VM is rolled back (target
stopped, source powered back on if it was on) and its target removed. Each worker has its own
source session and state-store connection (neither pyVmomi's stub nor sqlite3 is shared
between threads).

A warm VM (``migrate --warm``, ``type: warm`` in the plan, or a warm migration recorded unfinished)
runs ``WARM_STEPS`` instead: its precopy rounds draw on the run's bandwidth bucket, and each round
(and its cutover) waits for an in-flight slot of the run, given back between rounds
(``migrator.migrate.slots``). A cancelled warm VM is rolled back with every migrator snapshot
removed; a failed one has them removed too (as `migrator cutover --warm`); an interrupted one keeps
its last round's snapshot, which the next run resumes from.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from core.errors import InputError, MigratorError
from core.plan import Plan, PlannedVM
from migrator.cutover import migration
from migrator.cutover.pipeline import Step, StepFailed, StepResult, run_steps
from migrator.cutover.ports import ClusterAccess, CutoverSource, CutoverTarget
from migrator.cutover.precopy import WARM
from migrator.cutover.state import Migration, StateStore
from migrator.cutover.steps import CUTOVER_STEPS, CutoverContext, CutoverOptions
from migrator.cutover.targets import DiskOrigin
from migrator.cutover.warm import DEFAULT_INTERVAL, WARM_STEPS, Pacing, WarmContext, WarmOptions
from migrator.cutover.warm import begin as begin_warm
from migrator.cutover.warm import cleanup as cleanup_warm
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
class WarmSettings:
    """The run's warm flags. ``interval``/``cutover_at`` None: not given (a resumed VM keeps its recorded ones)."""

    all_vms: bool = False  # --warm: every VM of the run, whatever its plan entry says
    interval: float | None = None  # --precopy-interval, seconds
    cutover_at: float | None = None  # --cutover-at, epoch seconds: before the waves' windows
    enable_cbt: bool = False


def is_warm(planned: PlannedVM, recorded: Migration | None, settings: WarmSettings) -> bool:
    """--warm, ``type: warm`` in the plan, or a warm migration of the VM recorded and not rolled back."""
    resumed = recorded is not None and recorded.status != "rolled_back" and WARM in recorded.facts
    return settings.all_vms or planned.type == "warm" or resumed


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
    warm: WarmSettings = field(default_factory=WarmSettings)


@dataclass(frozen=True)
class WarmRun:
    """How one warm VM of the run is paced, and when it cuts over (the run's --cutover-at, else its wave's window)."""

    pacing: Pacing
    cutover_at: float | None = None


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


Context = TypeVar("Context")


def observed_steps(
    vm: str,
    view: View,
    meter: VmMeter,
    steps: Sequence[Step[Context]] = CUTOVER_STEPS,  # type: ignore[assignment]
) -> tuple[Step[Context], ...]:
    """The steps (CUTOVER_STEPS, or WARM_STEPS), each checking for a stop before it runs and reporting its start
    and end."""

    def wrap(step: Step[Context]) -> Step[Context]:
        def run(ctx: Context) -> StepResult | None:
            meter.check()
            view.step(vm, step.name, "started")
            result = step.run(ctx)
            view.step(vm, step.name, "done", result.detail if result else None)
            return result

        return replace(step, run=run)

    return tuple(wrap(step) for step in steps)


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


def migrate_vm(
    planned: PlannedVM, env: RunEnv, view: View, meter: VmMeter, stop: StopSignal, warm: WarmRun | None = None
) -> Outcome:
    """Cut one VM over (resuming its recorded steps), warm when ``warm``; never raises for the VM's own failures."""
    started = time.monotonic()
    vm = planned.source_name
    store = StateStore(env.state_dir)
    try:
        try:
            return _run(planned, env, view, meter, stop, store, started, warm)
        except MigratorError as error:
            return _outcome(store, vm, FAILED, started, error.message)
        except Exception as error:  # a bug: this VM fails, the others go on
            return _outcome(store, vm, FAILED, started, f"internal error: {type(error).__name__}: {error}")
    finally:
        store.close()


def _warm_context(ctx: CutoverContext, live: Any, env: RunEnv, run: WarmRun, meter: VmMeter) -> WarmContext:
    from migrator.cutover.targets.warm import ClusterWarmTarget, LocalWarmTarget
    from migrator.sources.vsphere.changes import VSphereChanges

    spec = env.target
    if spec.volumes_dir is not None:
        raise InputError("a warm migration in a Migration's Job is not supported yet: migrate this VM cold")
    target = (
        LocalWarmTarget(spec.output_dir)
        if spec.output_dir is not None
        else ClusterWarmTarget(spec.kubeconfig, spec.namespace or env.plan.target_namespace)
    )
    recorded = ctx.store.get(ctx.key)
    schedule = (recorded.facts.get(WARM) or {}) if recorded is not None and recorded.status != "rolled_back" else {}
    interval = env.warm.interval or float(schedule.get("interval") or DEFAULT_INTERVAL)
    cutover_at = run.cutover_at or schedule.get("cutover_at")
    options = WarmOptions(interval=interval, cutover_at=cutover_at, enable_cbt=env.warm.enable_cbt)
    return WarmContext(ctx, VSphereChanges(live), live, target, options, pacing=run.pacing, rate_limiter=meter)


def _run(
    planned: PlannedVM,
    env: RunEnv,
    view: View,
    meter: VmMeter,
    stop: StopSignal,
    store: StateStore,
    started: float,
    warm_run: WarmRun | None,
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
        access = None if env.target.output_dir is not None else ClusterAccess.given(env.target.kubeconfig)
        ctx = CutoverContext(
            env.plan,
            planned,
            live,
            target,
            store,
            options,
            announce=lambda line: view.line(vm, line),
            cluster_access=access,
        )
        warm = _warm_context(ctx, live, env, warm_run, meter) if warm_run is not None else None
        with migration.exclusive_run(store, ctx.key):
            reason = stop()
            if reason == CANCELLED_ERROR and store.get(vm) is None:
                cancel.clear(env.state_dir, vm)
                return _outcome(store, vm, CANCELLED, started, f"{CANCELLED_ERROR} before it started")
            migration.begin(ctx)
            try:
                if warm is not None:
                    begin_warm(warm)
                    steps = observed_steps(vm, view, meter, WARM_STEPS)
                    record = run_steps(ctx.key, steps, warm, store, announce=ctx.announce)
                else:
                    record = run_steps(ctx.key, observed_steps(vm, view, meter), ctx, store, announce=ctx.announce)
            except StepFailed as failed:
                return _failed(ctx, env, view, stop, failed, started, warm)
            migration.complete(ctx, record)
            return _outcome(store, vm, MIGRATED, started)


def _failed(
    ctx: CutoverContext,
    env: RunEnv,
    view: View,
    stop: StopSignal,
    failed: StepFailed,
    started: float,
    warm: WarmContext | None = None,
) -> Outcome:
    vm, store = ctx.key, ctx.store
    view.step(vm, failed.step, "failed", failed.message)
    reason = stop()
    if reason == CANCELLED_ERROR:
        actions = migration.record_rollback(ctx, warm)  # a warm VM's snapshots removed too
        actions.append(ctx.target.remove(ctx.plan, ctx.planned))
        ctx.announce(f"rollback: {actions[-1]}")
        store.set_status(vm, "rolled_back", error=CANCELLED_ERROR)
        store.set_fact(vm, "cancelled_at", time.time())
        cancel.clear(env.state_dir, vm)
        return _outcome(store, vm, CANCELLED, started, f"{CANCELLED_ERROR} in step {failed.step}: rolled back")
    if reason == INTERRUPTED_ERROR:
        # A warm VM keeps its last round's snapshot: the next run resumes from it.
        where = migration.record_interruption(ctx, failed.step).message
        hint = "" if "re-run to resume" in where else ": re-run to resume"
        return _outcome(store, vm, INTERRUPTED, started, f"{where}{hint}")
    if warm is not None:
        for line in cleanup_warm(warm):  # a failed warm migration leaves no snapshot behind
            ctx.announce(f"cleanup: {line}")
    if failed.source_touched and env.rollback_on_failure:
        actions = migration.record_rollback(ctx)
        return _outcome(store, vm, FAILED, started, f"{failed.message}; rolled back ({'; '.join(actions)})")
    hint = "re-run to resume, or roll back" if failed.source_touched else "the source was not touched"
    return _outcome(store, vm, FAILED, started, f"{failed.message}; {hint}")


__all__ = ["RunEnv", "StopSignal", "Stopped", "TargetSpec", "WarmRun", "WarmSettings", "is_warm", "migrate_vm"]
