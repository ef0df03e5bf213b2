"""`migrator migrate --plan FILE`: many VMs of a plan through the cutover pipeline, concurrently, in waves.

Parses and prints only: the run is ``migrator.migrate``. Exit status 0 when every VM that ran
was migrated (VMs skipped as blocked, or cancelled, are not failures), 4 when one failed,
130 when interrupted (re-run to resume), 2 on bad input.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import click

from core.errors import InputError
from migrator.cli.cutover_warm import parse_duration, parse_time
from migrator.cli.options import source_options
from migrator.cutover.ports import Verification
from migrator.cutover.state import default_state_dir
from migrator.cutover.steps import CutoverOptions
from migrator.migrate import MigrateRequest, cancel, migrate
from migrator.migrate.meter import parse_rate
from migrator.migrate.progress import MODES
from migrator.migrate.scheduler import FORKLIFT_DEFAULT_DISKS_PER_HOST, Limits
from migrator.migrate.summary import exit_status
from migrator.migrate.worker import TargetSpec, WarmSettings
from migrator.planning.planfile import read_plan
from migrator.sources import SourceOptions, split_source
from migrator.sources.credentials import read_password


def _password_once(options: SourceOptions, source: str) -> None:
    """Ask on the terminal once for the whole run, not once per VM (the workers read the variable)."""
    if options.password_file or os.environ.get(options.password_env) or not (options.prompt and sys.stdin.isatty()):
        return
    scheme, location = split_source(source)
    if scheme == "vsphere":
        account = location.split("/", 1)[0]
        os.environ[options.password_env] = read_password(options, account)


@click.command("migrate")
@click.option("--plan", "plan_path", required=True, type=click.Path(path_type=Path), help="The plan file.")
@click.option("--vm", "patterns", multiple=True, metavar="NAME|GLOB", help="Only these VMs (repeatable).")
@click.option("--wave", metavar="NAME", help="Only this wave of the plan.")
@click.option("--warm", is_flag=True, help="Warm migration: copy while the source runs, then cut over.")
@click.option(
    "--precopy-interval", metavar="DURATION", help="Warm: between precopy rounds (5 = 5 s, 10m, 1h; default 60m)."
)
@click.option(
    "--cutover-at",
    metavar="TIME",
    help="Warm: cut over once this time passes (ISO 8601 or HH:MM); default: the wave's window start, else --now.",
)
@click.option("--enable-cbt", is_flag=True, help="Warm: turn changed-block tracking on where it is off.")
@source_options
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), help="Target: this machine.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Target: this cluster.")
@click.option("--namespace", help="Target namespace (default: the plan's).")
@click.option(
    "--volumes-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Cluster target, run in a pod: each claim is mounted at DIR/<claim>/ (a Migration's Job).",
)
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), help="Migration state directory.")
@click.option("--max-in-flight", type=int, default=4, show_default=True, help="VMs migrating at once.")
@click.option(
    "--max-disks-per-host",
    type=int,
    default=FORKLIFT_DEFAULT_DISKS_PER_HOST,
    show_default=True,
    help="Disks being copied at once per ESXi host (as Forklift counts them).",
)
@click.option("--max-rate", metavar="RATE", help="Bandwidth of all transfers together, e.g. 200MiB/s.")
@click.option("--progress", type=click.Choice(MODES), default="auto", show_default=True)
@click.option("--force", multiple=True, metavar="ID", help="Migrate despite this Critical concern (repeatable).")
@click.option("--shutdown-timeout", type=float, default=300.0, show_default=True, help="Then power off.")
@click.option("--start", "start_policy", type=click.Choice(["always", "source"]), default="always", show_default=True)
@click.option("--verify-marker", metavar="TEXT", help="Wait for this line on each guest's serial console.")
@click.option("--verify-port", type=int, metavar="N", help="Wait until each guest accepts TCP connections on N.")
@click.option("--verify-timeout", type=float, default=300.0, show_default=True, help="Seconds for Running + checks.")
@click.option("--rollback-on-failure", is_flag=True, help="On a VM's failure after source-off: roll that VM back.")
@click.option(
    "--skip-conversion", is_flag=True, envvar="MIGRATOR_SKIP_CONVERSION", help="Do not convert the guest OS (virt-v2v)."
)
@click.option(
    "--cancel",
    "cancel_first",
    multiple=True,
    metavar="NAME",
    help="Cancel this VM's migration first (as `migrator cancel`): this run rolls it back (repeatable).",
)
def migrate_command(
    plan_path: Path,
    patterns: tuple[str, ...],
    wave: str | None,
    warm: bool,
    precopy_interval: str | None,
    cutover_at: str | None,
    enable_cbt: bool,
    source_options: SourceOptions,
    output_dir: Path | None,
    kubeconfig: str | None,
    namespace: str | None,
    volumes_dir: Path | None,
    state_dir: Path | None,
    max_in_flight: int,
    max_disks_per_host: int,
    max_rate: str | None,
    progress: str,
    force: tuple[str, ...],
    shutdown_timeout: float,
    start_policy: str,
    verify_marker: str | None,
    verify_port: int | None,
    verify_timeout: float,
    rollback_on_failure: bool,
    skip_conversion: bool,
    cancel_first: tuple[str, ...],
) -> None:
    """Migrate the plan's ready VMs (or those named), concurrently, wave by wave."""
    if output_dir is not None and kubeconfig is not None:
        raise InputError("give one target: --output-dir DIR (this machine) or --kubeconfig F (a cluster)")
    if output_dir is None and kubeconfig is None and namespace is None:
        raise InputError("migrate needs a target: --output-dir DIR, or --kubeconfig F [--namespace NS]")
    if volumes_dir is not None and output_dir is not None:
        raise InputError("--volumes-dir is for a cluster target, not --output-dir")
    if max_in_flight < 1 or max_disks_per_host < 1:
        raise InputError("--max-in-flight and --max-disks-per-host must be at least 1")
    if shutdown_timeout < 0 or verify_timeout <= 0:
        raise InputError("--shutdown-timeout and --verify-timeout must be positive")
    rate = parse_rate(max_rate) if max_rate is not None else None
    options = CutoverOptions(
        shutdown_timeout=shutdown_timeout,
        start_policy=start_policy,
        verification=Verification(marker=verify_marker, tcp_port=verify_port, timeout=verify_timeout),
        force=force,
        skip_conversion=skip_conversion or None,
    )
    if warm and volumes_dir is not None:
        raise InputError("--warm: a warm migration in a Migration's Job (--volumes-dir) is not supported yet")
    warm_settings = WarmSettings(
        all_vms=warm,
        interval=parse_duration(precopy_interval) if precopy_interval else None,
        cutover_at=parse_time(cutover_at) if cutover_at else None,
        enable_cbt=enable_cbt,
    )
    plan = read_plan(plan_path)  # a bad plan fails here, before any prompt
    _password_once(source_options, plan.source)
    request = MigrateRequest(
        plan_path=plan_path,
        target=TargetSpec(output_dir=output_dir, kubeconfig=kubeconfig, namespace=namespace, volumes_dir=volumes_dir),
        patterns=patterns,
        wave=wave,
        force=force,
        limits=Limits(max_in_flight=max_in_flight, max_disks_per_host=max_disks_per_host),
        max_rate=rate,
        state_dir=state_dir,
        source_options=replace(source_options, prompt=False),
        options=options,
        rollback_on_failure=rollback_on_failure,
        progress=progress,
        warm=warm_settings,
    )
    for vm in cancel_first:
        cancel.request(state_dir or default_state_dir(), vm)
    outcomes = migrate(request)
    sys.exit(exit_status(outcomes))
