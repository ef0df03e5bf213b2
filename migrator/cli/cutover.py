"""`migrator cutover --vm NAME`: the moment a VM leaves vSphere and starts on the target, resumably.

Runs ``migrator.cutover.steps.CUTOVER_STEPS`` against the live source and the target (the
local runtime with ``--output-dir``, a cluster with ``--kubeconfig``/``--namespace``); every
step is recorded in the state store, so a re-run continues where a crash left off.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import click

from core.errors import InputError, MigratorError, NotFoundError, TargetError
from core.plan import Plan, PlannedVM
from migrator.cli.cutover_warm import WarmRequest, warm_context, warm_options
from migrator.cli.options import source_options
from migrator.convert import plans
from migrator.convert.run import _inventory_of
from migrator.cutover.pipeline import StepFailed, run_steps
from migrator.cutover.ports import CutoverSource, CutoverTarget, Verification
from migrator.cutover.state import StateStore
from migrator.cutover.steps import CUTOVER_STEPS, CutoverContext, CutoverOptions, rollback
from migrator.cutover.targets import DiskOrigin
from migrator.cutover.warm import WARM_STEPS, WarmContext, request_cutover
from migrator.cutover.warm import begin as begin_warm
from migrator.cutover.warm import cleanup as cleanup_warm
from migrator.sources import SourceOptions, open_source, split_source


class CutoverFailed(MigratorError):
    exit_code = 4


def _echo(line: str) -> None:
    click.echo(line)


@contextlib.contextmanager
def _opened_source(spec: str, options: SourceOptions) -> Iterator[CutoverSource]:
    if split_source(spec)[0] != "vsphere":
        raise InputError(f"cutover needs a live vSphere source (vsphere://USER@HOST), not {spec!r}")
    source = open_source(spec, options)
    try:
        yield source  # type: ignore[misc]  # the vSphere adapter satisfies CutoverSource
    finally:
        source.close()


@contextlib.contextmanager
def _only_one_run(store: StateStore, key: str) -> Iterator[None]:
    """One cutover (or rollback) of a VM at a time: two would race on the source's power."""
    lock_path = store.state_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.lock"
    with lock_path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another cutover of {key} is running (lock {lock_path})") from None
        yield  # the kernel drops the lock when this process dies, kill -9 included


def _plan(vm: str, plan_path: Path | None, source: CutoverSource, namespace: str | None) -> tuple[Plan, PlannedVM]:
    if plan_path is not None:
        plan = plans.load_plan(plan_path)
        if namespace:
            plan.target_namespace = namespace
    else:
        inventory = _inventory_of(source, vm)  # type: ignore[arg-type]
        plan = plans.one_vm_plan(inventory, vm, source=source.url, namespace=namespace or "default")
    return plan, plans.find_vm(plan, vm)


def _recorded_endpoints(
    vm: str, state_dir: Path | None, output_dir: Path | None, kubeconfig: str | None, namespace: str | None
) -> tuple[str | None, Path | None, str | None]:
    """For `cutover --rollback --vm NAME` alone: the source and target the recorded cutover used."""
    store = StateStore(state_dir)
    try:
        migration = store.get(vm)
    finally:
        store.close()
    if migration is None:
        raise NotFoundError(f"no cutover recorded for VM {vm}: give --plan or --source and the target")
    if output_dir is None and kubeconfig is None and namespace is None and migration.target:
        kind, _, where = migration.target.partition(":")
        if kind == "local":
            output_dir = Path(where)
        elif kind == "cluster":
            namespace = where
    return migration.source, output_dir, namespace


def _target(
    output_dir: Path | None, kubeconfig: str | None, namespace: str | None, origin: DiskOrigin
) -> CutoverTarget:
    if output_dir is not None:
        from migrator.cutover.targets.local import LocalTarget

        return LocalTarget(output_dir, origin)
    from migrator.cutover.targets.cluster import ClusterTarget

    return ClusterTarget(kubeconfig, namespace, origin)


@click.command("cutover")
@click.option("--vm", "vm", required=True, help="The VM to cut over (source or target name).")
@click.option("--plan", "plan_path", type=click.Path(path_type=Path), help="The plan file from `migrator plan`.")
@click.option("--source", help="vsphere://USER@HOST[:PORT][/DC] when there is no plan.")
@source_options
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), help="Target: boot it on this machine.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Target: this cluster.")
@click.option("--namespace", help="Target namespace (default: the plan's, or 'default').")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), help="Migration state directory.")
@click.option("--shutdown-timeout", type=float, default=300.0, show_default=True, help="Then power off.")
@click.option("--start", "start_policy", type=click.Choice(["always", "source"]), default="always", show_default=True)
@click.option("--verify-marker", metavar="TEXT", help="Wait for this line on the guest's serial console.")
@click.option("--verify-port", type=int, metavar="N", help="Wait until the guest accepts TCP connections on N.")
@click.option("--verify-timeout", type=float, default=300.0, show_default=True, help="Seconds for Running + checks.")
@click.option("--pre-hook", metavar="CMD", help="Command run before the source is touched.")
@click.option("--post-hook", metavar="CMD", help="Command run once the target is verified.")
@click.option("--rollback-on-failure", is_flag=True, help="On failure after source-off: stop target, restore source.")
@click.option("--rollback", "do_rollback", is_flag=True, help="Roll back a recorded cutover of --vm now.")
@click.option("--force", multiple=True, metavar="ID", help="Cut over despite this Critical concern (repeatable).")
@warm_options
def cutover(
    vm: str,
    plan_path: Path | None,
    source: str | None,
    source_options: SourceOptions,
    output_dir: Path | None,
    kubeconfig: str | None,
    namespace: str | None,
    state_dir: Path | None,
    shutdown_timeout: float,
    start_policy: str,
    verify_marker: str | None,
    verify_port: int | None,
    verify_timeout: float,
    pre_hook: str | None,
    post_hook: str | None,
    rollback_on_failure: bool,
    do_rollback: bool,
    force: tuple[str, ...],
    warm: WarmRequest,
) -> None:
    """Cut one VM over: shut the source down, copy its disks, start and verify it on the target."""
    if warm.now and not warm.warm:
        # From another shell: tell the running precopy loop to cut over (recorded in the state store).
        store = StateStore(state_dir)
        try:
            _echo(request_cutover(store, vm))
        finally:
            store.close()
        return
    if do_rollback and plan_path is None and source is None:
        source, output_dir, namespace = _recorded_endpoints(vm, state_dir, output_dir, kubeconfig, namespace)
    if plan_path is None and source is None:
        raise InputError("cutover needs --plan FILE or --source vsphere://USER@HOST")
    if shutdown_timeout < 0 or verify_timeout <= 0:
        raise InputError("--shutdown-timeout and --verify-timeout must be positive")
    options = source_options
    origin = DiskOrigin(plan_path=plan_path, source=source, source_options=options, force=force)
    if output_dir is not None and kubeconfig is not None:
        raise InputError("give one target: --output-dir DIR (this machine) or --kubeconfig F (a cluster)")
    if output_dir is None and kubeconfig is None and namespace is None:
        raise InputError("cutover needs a target: --output-dir DIR, or --kubeconfig F --namespace NS")
    cutover_options = CutoverOptions(
        shutdown_timeout=shutdown_timeout,
        start_policy=start_policy,
        verification=Verification(marker=verify_marker, tcp_port=verify_port, timeout=verify_timeout),
        pre_hook=pre_hook,
        post_hook=post_hook,
        force=force,
    )
    store = StateStore(state_dir)
    try:
        spec = source or plans.load_plan(plan_path).source  # type: ignore[arg-type]
        with _opened_source(spec, options) as live:
            plan, planned = _plan(vm, plan_path, live, namespace)
            target = _target(output_dir, kubeconfig, namespace or plan.target_namespace, origin)
            hooks = replace(
                cutover_options,
                pre_hook=cutover_options.pre_hook or plan.hooks.get("pre"),
                post_hook=cutover_options.post_hook or plan.hooks.get("post"),
            )
            ctx = CutoverContext(plan, planned, live, target, store, hooks, announce=_echo)
            warm_ctx = warm_context(ctx, live, warm, output_dir, kubeconfig, namespace or plan.target_namespace)
            with _only_one_run(store, ctx.key):
                if do_rollback:
                    _rollback(ctx, warm_ctx)
                else:
                    _cutover(ctx, rollback_on_failure, warm_ctx)
    finally:
        store.close()


def _cutover(ctx: CutoverContext, rollback_on_failure: bool, warm: WarmContext | None = None) -> None:
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
    store.begin(key, plan=ctx.plan.name, source=ctx.plan.source, target=ctx.target.description)
    store.set_fact(key, "target_name", ctx.planned.target_name)
    _echo(f"{'warm ' if warm else ''}cutover of {key} to {ctx.target.description} as {ctx.planned.target_name}")
    try:
        if warm is not None:
            begin_warm(warm)
            migration = run_steps(key, WARM_STEPS, warm, store, announce=_echo)
        else:
            migration = run_steps(key, CUTOVER_STEPS, ctx, store, announce=_echo)
    except StepFailed as failed:
        for line in cleanup_warm(warm) if warm is not None else []:
            _echo(f"cleanup: {line}")
        if not failed.source_touched:
            raise CutoverFailed(f"cutover of {key} stopped: {failed.message}; the source was not touched") from None
        if not rollback_on_failure:
            raise CutoverFailed(
                f"cutover of {key} failed: {failed.message}; the source is off: re-run to resume, "
                f"or roll back with `migrator cutover --rollback --vm {key}`"
            ) from None
        actions = _rollback_actions(ctx, None)  # the snapshots were removed above
        raise CutoverFailed(f"cutover of {key} failed: {failed.message}; rolled back ({'; '.join(actions)})") from None
    if migration.status != "completed":
        store.set_status(key, "completed")
        migration = store.get(key) or migration
    downtime = migration.downtime_seconds
    _echo(
        f"cutover of {key} completed: {ctx.planned.target_name} runs on {ctx.target.description}"
        + (f", downtime {downtime:.1f}s" if downtime is not None else "")
    )


def _rollback_actions(ctx: CutoverContext, warm: WarmContext | None) -> list[str]:
    try:
        actions = rollback(ctx) + (cleanup_warm(warm) if warm is not None else [])
    except MigratorError as error:
        ctx.store.set_status(ctx.key, "failed", error=f"rollback failed: {error.message}")
        raise CutoverFailed(f"rollback of {ctx.key} failed: {error.message}") from None
    for action in actions:
        _echo(f"rollback: {action}")
    ctx.store.set_status(ctx.key, "rolled_back", error=ctx.store.get(ctx.key).error)  # type: ignore[union-attr]
    return actions


def _rollback(ctx: CutoverContext, warm: WarmContext | None) -> None:
    migration = ctx.store.get(ctx.key)
    if migration is None:
        raise NotFoundError(f"no cutover recorded for VM {ctx.key} in {ctx.store.path}: nothing to roll back")
    if migration.target not in (None, ctx.target.description):
        raise TargetError(f"the cutover of {ctx.key} went to {migration.target}, not {ctx.target.description}")
    _rollback_actions(ctx, warm)
    _echo(f"cutover of {ctx.key} rolled back")
