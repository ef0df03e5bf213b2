"""`migrator plan`: read a source, decide what moving each VM takes, write the plan file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from core.errors import InputError
from core.plan import Plan
from core.units import human_rate
from migrator.cli.options import DEFAULT_PLAN_FILE, source_options
from migrator.cli.output import FORMATS, Column, table
from migrator.planning import table as plan_table
from migrator.planning.mapping import build_maps
from migrator.planning.naming import sanitize
from migrator.planning.planfile import dump_yaml, plan_document, write_plan
from migrator.planning.planner import PlanOptions, build_plan
from migrator.planning.selection import select_vms
from migrator.planning.summary import totals
from migrator.planning.throughput import measure
from migrator.planning.waves import build_waves, parse_wave_flag, parse_window_flag
from migrator.sources import SourceOptions, open_source, require_disks, split_source

EXIT_BLOCKED = 3
VM_COLUMNS = (
    *(Column(h, h, no_wrap=h in ("VM", "TARGET")) for h in plan_table.HEADERS),
    Column("POWER", "POWER", wide_only=True),
    Column("FIRMWARE", "FIRMWARE", wide_only=True),
    Column("GUEST OS", "GUEST OS", wide_only=True),
    Column("FOLDER", "FOLDER", wide_only=True),
)


def _vm_rows(plan: Plan) -> list[dict[str, str]]:
    rows = []
    for planned in plan.vms:
        vm = planned.vm
        row = dict(zip(plan_table.HEADERS, plan_table.row(planned), strict=True))
        row.update(
            {
                "POWER": vm.power_state.value,
                "FIRMWARE": vm.firmware.value,
                "GUEST OS": vm.guest_id or "-",
                "FOLDER": vm.folder or "-",
            }
        )
        rows.append(row)
    return rows


def render_plan(plan: Plan, output_format: str, no_headers: bool) -> str:
    """table/wide: the VM rows sized to the terminal, then the concerns and the summary; rows only with --no-headers."""
    rows = table(_vm_rows(plan), VM_COLUMNS, wide=output_format == "wide", no_headers=no_headers)
    if no_headers:
        return rows
    return plan_table.render(plan, vm_table=rows)


def default_plan_name(source_url: str) -> str:
    """A stable name from the source: the host for vSphere, the file's stem for VMX/OVF/OVA."""
    scheme, location = split_source(source_url)
    if scheme == "vsphere":
        host = location.split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0]
        return sanitize(host, "plan")
    return sanitize(Path(location).stem, "plan")


@click.command(
    "plan",
    epilog="""\b
Examples:
  migrator plan --source vsphere://admin@vcenter.example.com/DC1 --network 'VM Network=pod'
  migrator plan --source vsphere://admin@vc/DC1 --vm 'web-*' --vm db01 -o wide
  migrator plan --source vmx:/vms/web01/web01.vmx -o json --output-file -
  migrator -vv plan --source ova:appliance.ova --storage datastore1=standard
  migrator plan --source vsphere://admin@vc/DC1 --folder prod -o name --no-headers""",
)
@click.option(
    "--source", "source_spec", metavar="SPEC", help="vsphere://USER@HOST[:PORT][/DC], vmx:PATH, ovf:PATH or ova:PATH."
)
@source_options
@click.option(
    "--vm",
    "vm_patterns",
    multiple=True,
    metavar="NAME_OR_GLOB",
    help="VMs to plan (repeatable; globs allowed). Default: all.",
)
@click.option("--folder", metavar="F", help="Only VMs in this inventory folder (path or folder name).")
@click.option("--cluster", metavar="C", help="Only VMs in this cluster.")
@click.option(
    "--map",
    "map_file",
    metavar="FILE",
    help="YAML map file: {networks: {SRC: pod|ignore|multus:NS/NAME}, storage: {DS: CLASS}}.",
)
@click.option(
    "--network", "network_flags", multiple=True, metavar="SRC=TARGET", help="Map a source network (repeatable)."
)
@click.option(
    "--storage",
    "storage_flags",
    multiple=True,
    metavar="DS=CLASS",
    help="Map a datastore to a storage class (repeatable).",
)
@click.option("--namespace", default="default", show_default=True, help="Target namespace.")
@click.option("--pre-hook", metavar="CMD", help="Command `migrator cutover` runs before touching the source.")
@click.option("--post-hook", metavar="CMD", help="Command `migrator cutover` runs once the target is verified.")
@click.option(
    "--wave",
    "wave_flags",
    multiple=True,
    metavar="NAME=GLOB",
    help="Put the planned VMs matching GLOB in wave NAME (repeatable; waves run in the order named).",
)
@click.option(
    "--wave-window",
    "wave_windows",
    multiple=True,
    metavar="NAME=START/END",
    help="Cutover window of wave NAME: ISO 8601 times with an offset; one side may be empty (repeatable).",
)
@click.option("--name", "plan_name", metavar="PLAN_NAME", help="Plan name (default: from the source host or file).")
@click.option(
    "--output-file",
    default=DEFAULT_PLAN_FILE,
    show_default=True,
    metavar="FILE",
    help="Where to write the plan ('-' to not write one).",
)
@click.option(
    "-o",
    "--output",
    "output_format",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="What to print on stdout: table, wide (more columns), json/yaml (the plan document), name (VM names).",
)
@click.option("--no-headers", is_flag=True, help="table/wide: only the VM rows, no title, header or summary.")
@click.option(
    "--default-network",
    type=click.Choice(["pod", "ignore"]),
    help="Target for NICs whose network the map does not cover.",
)
@click.option(
    "--default-storage-class", metavar="CLASS", help="Storage class for disks whose datastore the map does not cover."
)
@click.option(
    "--type",
    "migration_type",
    type=click.Choice(["cold", "warm"]),
    default="cold",
    show_default=True,
    help="How cutover moves the VMs (warm: precopy with changed-block tracking).",
)
@click.option(
    "--measure-throughput",
    is_flag=True,
    help="Read a few seconds of one disk per datastore through the disk engine; record the rates for `report`.",
)
@click.option(
    "--measure-seconds",
    type=click.FloatRange(0.5, 60),
    default=3.0,
    show_default=True,
    help="With --measure-throughput: how long to read each datastore's disk.",
)
def plan(
    source_spec: str | None,
    source_options: SourceOptions,
    vm_patterns: tuple[str, ...],
    folder: str | None,
    cluster: str | None,
    map_file: str | None,
    network_flags: tuple[str, ...],
    storage_flags: tuple[str, ...],
    namespace: str,
    pre_hook: str | None,
    post_hook: str | None,
    wave_flags: tuple[str, ...],
    wave_windows: tuple[str, ...],
    plan_name: str | None,
    output_file: str,
    output_format: str,
    no_headers: bool,
    default_network: str | None,
    default_storage_class: str | None,
    migration_type: str,
    measure_throughput: bool,
    measure_seconds: float,
) -> None:
    """Plan the migration: source facts, target names, mapped networks and storage, and concerns.

    Exit status: 0 when no VM is blocked, 3 when a VM has a Critical concern, 2 on bad input.
    """
    if not source_spec:
        raise InputError("--source is required: vsphere://USER@HOST[:PORT][/DC], vmx:PATH, ovf:PATH or ova:PATH")
    if sanitize(namespace, "") != namespace:
        raise InputError(f"--namespace {namespace!r} is not a valid namespace name (RFC 1123 label)")
    if plan_name is not None and sanitize(plan_name, "") != plan_name:
        raise InputError(f"--name {plan_name!r} is not a valid plan name (RFC 1123 label)")
    if wave_windows and not wave_flags:
        raise InputError("--wave-window needs the wave: --wave NAME=GLOB")
    for flag in wave_flags:
        parse_wave_flag(flag)  # a malformed flag fails before we connect anywhere
    for flag in wave_windows:
        parse_window_flag(flag)
    # maps first: a bad map file fails before we connect anywhere
    maps = build_maps(map_file, network_flags, storage_flags, default_network, default_storage_class)
    source = open_source(source_spec, source_options)
    try:
        inventory = source.inventory()
        vms = select_vms(inventory.vms, vm_patterns, folder, cluster)
        result = build_plan(
            vms,
            maps,
            PlanOptions(
                name=plan_name or default_plan_name(source.url),
                source=source.url,
                namespace=namespace,
                hooks={k: v for k, v in (("pre", pre_hook), ("post", post_hook)) if v},
                migration_type=migration_type,
            ),
        )
        result.waves = build_waves(result.vms, wave_flags, wave_windows)
        result.source_thumbprint = source.certificate_thumbprint  # trust on first use: later commands pin it
        if measure_throughput:
            from migrator.convert.run import disk_sources  # the disk engine: only when measuring

            require_disks(source_spec, "--measure-throughput")
            scheme, location = split_source(source_spec)
            open_disk = disk_sources(scheme, location, source, source_options)
            result.throughput = measure(result, open_disk, seconds=measure_seconds, echo=_warn)
            for m in result.throughput:
                click.echo(f"throughput {m.datastore}: {human_rate(m.bytes_per_second)} ({m.disk})", err=True)
    finally:
        source.close()
    document = plan_document(result)
    document["summary"] = totals(result).to_dict()
    if output_file != "-":
        written = write_plan(result, output_file, document=document)
        blocked = sum(1 for v in result.vms if v.blocked)
        click.echo(f"wrote {written} ({len(result.vms)} VM(s), {blocked} blocked)", err=True)
    if output_format == "json":
        # indented on a terminal; compact when piped (the C encoder: ~5x faster on thousands of VMs)
        indent = 2 if sys.stdout.isatty() else None
        click.echo(json.dumps(document, indent=indent, ensure_ascii=False))
    elif output_format == "yaml":
        click.echo(dump_yaml(document), nl=False)
    elif output_format == "name":
        for planned in result.vms:
            click.echo(planned.source_name)
    else:
        click.echo(render_plan(result, output_format, no_headers))
    if result.blocked:
        sys.exit(EXIT_BLOCKED)


def _warn(line: str) -> None:
    click.echo(line, err=True)
