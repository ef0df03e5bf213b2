"""`migrator cutover --vm NAME`: the moment a VM leaves vSphere and starts on the target, resumably.

Runs ``migrator.cutover.steps.CUTOVER_STEPS`` against the live source and the target (the
local runtime with ``--output-dir``, a cluster with ``--kubeconfig``/``--namespace``); every
step is recorded in the state store, so a re-run continues where a crash left off.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import click

from core.errors import InputError
from core.plan import Plan, PlannedVM
from migrator import logs
from migrator.cli.cutover_warm import WarmRequest, warm_context, warm_options
from migrator.cli.options import cluster_options, source_options, vm_option
from migrator.convert import plans
from migrator.cutover import migration
from migrator.cutover.ports import ClusterAccess, CutoverSource, CutoverTarget, Verification
from migrator.cutover.state import StateStore
from migrator.cutover.steps import CutoverContext, CutoverOptions
from migrator.cutover.targets import DiskOrigin
from migrator.cutover.warm import request_cutover
from migrator.sources import SourceOptions, open_source, split_source


def _echo(line: str) -> None:
    click.echo(line)
    logs.announce(line)


def _json_echo(vm: str) -> Callable[[str], None]:
    """With --progress json every stdout line is a JSON event: the step lines too, beside the disks' progress."""

    def echo(line: str) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        click.echo(json.dumps({"time": now, "vm": vm, "event": "cutover", "message": line}, ensure_ascii=False))
        logs.announce(line)

    return echo


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
        inventory = source.inventory_of(vm)
        plan = plans.one_vm_plan(inventory, vm, source=source.url, namespace=namespace or "default")
    return plan, plans.find_vm(plan, vm)


@dataclass(frozen=True)
class Endpoints:
    """Where a cutover reads and writes: its source, and the local or cluster target."""

    source: str | None
    output_dir: Path | None
    namespace: str | None
    kubeconfig: str | None
    kube_context: str | None


def _recorded_endpoints(vm: str, state_dir: Path | None, given: Endpoints) -> Endpoints:
    """For `cutover --rollback --vm NAME` alone: the source and target the recorded cutover used (the target
    given on the command line, if any, instead)."""
    store = StateStore(state_dir)
    try:
        recorded = migration.recorded_endpoints(store, vm)
    finally:
        store.close()
    if given.output_dir or given.kubeconfig or given.kube_context or given.namespace:
        return replace(given, source=recorded.source)
    access = recorded.cluster_access or ClusterAccess()
    return Endpoints(recorded.source, recorded.output_dir, recorded.namespace, access.kubeconfig, access.context)


def _target(
    output_dir: Path | None,
    kubeconfig: str | None,
    namespace: str | None,
    origin: DiskOrigin,
    context: str | None = None,
    skip: bool | None = None,
    announce: Callable[[str], None] = _echo,
) -> CutoverTarget:
    if output_dir is not None:
        from migrator.cutover.targets.local import LocalTarget

        return LocalTarget(output_dir, origin, announce=announce)
    from migrator.cutover.targets.cluster import ClusterTarget

    return ClusterTarget(kubeconfig, namespace, origin, context=context, skip_conversion=skip)


@click.command(
    "cutover",
    epilog="""\b
Examples:
  migrator cutover --plan plan.yaml --vm web01 --output-dir out/ --verify-marker 'login:' --rollback-on-failure
  migrator cutover --plan plan.yaml --vm web01 -n prod --context prod-east --verify-port 22
  migrator cutover --plan plan.yaml --vm web01 --output-dir out/   # again: resumes where it stopped
  migrator cutover --rollback --vm web01           # stop the target, power the source back on""",
)
@vm_option("The VM to cut over (source or target name); once per run.")
@click.option("--plan", "plan_path", type=click.Path(path_type=Path), help="The plan file from `migrator plan`.")
@click.option("--source", help="vsphere://USER@HOST[:PORT][/DC] when there is no plan.")
@source_options
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), help="Target: boot it on this machine.")
@cluster_options(namespace_help="Target: this namespace of the cluster (default: the plan's, or 'default').")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), help="Migration state directory.")
@click.option(
    "--shutdown-timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds the source's guest gets to shut down through VMware Tools before a hard power-off.",
)
@click.option(
    "--start",
    "start_policy",
    type=click.Choice(["always", "source"]),
    default="always",
    show_default=True,
    help="Start the target always, or only if the source was running before the cutover (source).",
)
@click.option("--verify-marker", metavar="TEXT", help="Wait for this line on the guest's serial console.")
@click.option("--verify-port", type=int, metavar="N", help="Wait until the guest accepts TCP connections on N.")
@click.option("--verify-timeout", type=float, default=300.0, show_default=True, help="Seconds for Running + checks.")
@click.option("--pre-hook", metavar="CMD", help="Command run before the source is touched.")
@click.option("--post-hook", metavar="CMD", help="Command run once the target is verified.")
@click.option("--rollback-on-failure", is_flag=True, help="On failure after source-off: stop target, restore source.")
@click.option(
    "--stop-grace",
    type=float,
    default=30.0,
    show_default=True,
    help="Rollback: seconds the target gets to shut down cleanly before it is destroyed.",
)
@click.option(
    "--progress",
    type=click.Choice(["auto", "json", "none"]),
    default="auto",
    show_default=True,
    help="Per-disk bars on a terminal (auto); json: every stdout line a timestamped JSON event naming the VM.",
)
@click.option("--rollback", "do_rollback", is_flag=True, help="Roll back a recorded cutover of --vm now.")
@click.option("--force", multiple=True, metavar="ID", help="Cut over despite this Critical concern (repeatable).")
@click.option(
    "--skip-conversion", is_flag=True, envvar="MIGRATOR_SKIP_CONVERSION", help="Do not convert the guest OS (virt-v2v)."
)
@warm_options
def cutover(
    vm: str,
    plan_path: Path | None,
    source: str | None,
    source_options: SourceOptions,
    output_dir: Path | None,
    kubeconfig: str | None,
    kube_context: str | None,
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
    stop_grace: float,
    progress: str,
    do_rollback: bool,
    force: tuple[str, ...],
    skip_conversion: bool,
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
        given = Endpoints(None, output_dir, namespace, kubeconfig, kube_context)
        recorded = _recorded_endpoints(vm, state_dir, given)
        source, output_dir, namespace = recorded.source, recorded.output_dir, recorded.namespace
        kubeconfig, kube_context = recorded.kubeconfig, recorded.kube_context
    if plan_path is None and source is None:
        raise InputError("cutover needs --plan FILE or --source vsphere://USER@HOST")
    if shutdown_timeout < 0 or verify_timeout <= 0 or stop_grace < 0:
        raise InputError("--shutdown-timeout, --verify-timeout and --stop-grace must be positive")
    options = source_options
    origin = DiskOrigin(plan_path=plan_path, source=source, source_options=options, force=force, progress=progress)
    if output_dir is not None and (kubeconfig is not None or kube_context is not None):
        raise InputError("give one target: --output-dir DIR (this machine) or --kubeconfig F (a cluster)")
    if output_dir is None and kubeconfig is None and kube_context is None and namespace is None:
        raise InputError("cutover needs a target: --output-dir DIR, or --kubeconfig F --namespace NS")
    cutover_options = CutoverOptions(
        shutdown_timeout=shutdown_timeout,
        start_policy=start_policy,
        verification=Verification(marker=verify_marker, tcp_port=verify_port, timeout=verify_timeout),
        pre_hook=pre_hook,
        post_hook=post_hook,
        force=force,
        skip_conversion=skip_conversion,
        stop_grace=stop_grace,
    )
    store = StateStore(state_dir)
    try:
        recorded = plans.load_plan(plan_path) if plan_path is not None else None
        spec = source or recorded.source  # type: ignore[union-attr]
        live_options = options.pinned_to(recorded.source_thumbprint) if recorded and not source else options
        with _opened_source(spec, live_options) as live:
            plan, planned = _plan(vm, plan_path, live, namespace)
            echo = _json_echo(planned.source_name) if progress == "json" else _echo
            target = _target(
                output_dir, kubeconfig, namespace or plan.target_namespace, origin, kube_context, skip_conversion, echo
            )
            hooks = replace(
                cutover_options,
                pre_hook=cutover_options.pre_hook or plan.hooks.get("pre"),
                post_hook=cutover_options.post_hook or plan.hooks.get("post"),
            )
            access = None if output_dir is not None else ClusterAccess.given(kubeconfig, kube_context)
            ctx = CutoverContext(plan, planned, live, target, store, hooks, announce=echo, cluster_access=access)
            warm_ctx = warm_context(ctx, live, warm, output_dir, kubeconfig, namespace or plan.target_namespace)
            with (
                migration.exclusive_run(store, ctx.key),
                logs.log_file(migration.log_path(store, ctx.key)),
                migration.interruptible(),
            ):
                if do_rollback:
                    migration.roll_back(ctx, warm=warm_ctx)
                    done = store.get(ctx.key)
                    echo(f"cutover of {ctx.key} rolled back" + (f"; {migration.downtime_line(done)}" if done else ""))
                else:
                    done = migration.cut_over(ctx, rollback_on_failure=rollback_on_failure, warm=warm_ctx)
                    echo(
                        f"cutover of {ctx.key} completed: {planned.target_name} runs on {target.description}, "
                        f"{migration.downtime_line(done)}"
                    )
    finally:
        store.close()
