"""`migrator cutover --vm NAME`: the moment a VM leaves vSphere and starts on the target, resumably.

Runs ``migrator.cutover.steps.CUTOVER_STEPS`` against the live source and the target (the
local runtime with ``--output-dir``, a cluster with ``--kubeconfig``/``--namespace``); every
step is recorded in the state store, so a re-run continues where a crash left off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import click

from core.errors import InputError
from core.plan import Plan, PlannedVM
from migrator.cli.options import source_options
from migrator.convert import plans
from migrator.convert.run import _inventory_of
from migrator.cutover import migration
from migrator.cutover.ports import CutoverSource, CutoverTarget, Verification
from migrator.cutover.state import StateStore
from migrator.cutover.steps import CutoverContext, CutoverOptions
from migrator.cutover.targets import DiskOrigin
from migrator.sources import SourceOptions, open_source, split_source


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
        recorded = migration.recorded_endpoints(store, vm)
    finally:
        store.close()
    if output_dir is None and kubeconfig is None and namespace is None:
        output_dir, namespace = recorded.output_dir, recorded.namespace
    return recorded.source, output_dir, namespace


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
) -> None:
    """Cut one VM over: shut the source down, copy its disks, start and verify it on the target."""
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
        recorded = plans.load_plan(plan_path) if plan_path is not None else None
        spec = source or recorded.source  # type: ignore[union-attr]
        live_options = options.pinned_to(recorded.source_thumbprint) if recorded and not source else options
        with _opened_source(spec, live_options) as live:
            plan, planned = _plan(vm, plan_path, live, namespace)
            target = _target(output_dir, kubeconfig, namespace or plan.target_namespace, origin)
            hooks = replace(
                cutover_options,
                pre_hook=cutover_options.pre_hook or plan.hooks.get("pre"),
                post_hook=cutover_options.post_hook or plan.hooks.get("post"),
            )
            ctx = CutoverContext(plan, planned, live, target, store, hooks, announce=_echo)
            with migration.exclusive_run(store, ctx.key):
                if do_rollback:
                    migration.roll_back(ctx)
                    _echo(f"cutover of {ctx.key} rolled back")
                else:
                    done = migration.cut_over(ctx, rollback_on_failure=rollback_on_failure)
                    downtime = done.downtime_seconds
                    _echo(
                        f"cutover of {ctx.key} completed: {planned.target_name} runs on {target.description}"
                        + (f", downtime {downtime:.1f}s" if downtime is not None else "")
                    )
    finally:
        store.close()
