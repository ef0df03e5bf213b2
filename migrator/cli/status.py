"""`migrator status`: where every VM's migration stands, with timings and both downtime figures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from core.errors import NotFoundError
from migrator.cli.output import Column, output_options, render
from migrator.cli.status_warm import warm_fields, warm_lines
from migrator.convert import guest
from migrator.cutover import migration as runs
from migrator.cutover.state import Migration, StateStore
from migrator.planning.table import human_bytes

COLUMNS = (
    Column("VM", "vm", no_wrap=True),
    Column("STATUS", "status"),
    Column("STEP", "current_step"),
    Column("DOWNTIME", "downtime"),
    Column("MOVED", "moved"),
    Column("TARGET", "target", wide_only=True),
    Column("STARTED", "started_at", wide_only=True),
    Column("LOG", "log_file", wide_only=True),
    Column("NOTE", "note"),
)


def _inspection(migration: Migration) -> dict[str, Any] | None:
    """The guest inspection of a cutover to this machine (DIR/.migrator/inspection-<vm>.json)."""
    kind, _, where = (migration.target or "").partition(":")
    name = migration.facts.get("target_name")
    if kind != "local" or not name:
        return None
    inspection = guest.read_inspection(Path(where), str(name))
    return inspection.to_dict() if inspection else None


def _inspection_lines(data: dict[str, Any]) -> list[str]:
    inspection = guest.Inspection.from_dict(data)
    lines = [f"  guest        {inspection.summary()}"]
    if inspection.drivers:
        lines.append(f"  drivers      {', '.join(inspection.drivers)}")
    if inspection.removed:
        lines.append(f"  removed      {', '.join(inspection.removed)}")
    for pin in inspection.nic_pins:
        named = ", ".join(pin.configured_in)
        lines.append(f"  nic          {pin.mac} keeps {pin.name} ({pin.method}, named in {named})")
    for warning in inspection.warnings:
        lines.append(f"  warning      {warning}")
    return lines


def migration_report(migration: Migration, where: str | None = None) -> dict[str, Any]:
    return {
        "inspection": _inspection(migration),
        "vm": migration.vm,
        "plan": migration.plan,
        "source": migration.source,
        "target": migration.target,
        "status": migration.status,
        "current_step": migration.current_step,
        "started_at": _iso(migration.started_at),
        "finished_at": _iso(migration.finished_at),
        # the downtime: source off → target verified, or → source back on after a rollback
        "downtime_seconds": _round(migration.downtime_seconds),
        "downtime_to_running_seconds": _round(migration.downtime_to_running_seconds),
        "downtime_to_verified_seconds": _round(migration.downtime_to_verified_seconds),
        "downtime_to_source_back_seconds": _round(migration.downtime_to_source_back_seconds),
        "source_off_since": _iso(migration.source_off_since),
        "bytes_moved": migration.bytes_moved,
        "error": migration.error,
        "interrupted": migration.facts.get("interrupted"),
        "where": where if where is not None else migration.where,
        "log_file": migration.facts.get("log_file"),
        "source_power_state": migration.facts.get("source_power_state"),
        "steps": [
            {
                "step": s.step,
                "status": s.status,
                "seconds": _round(s.seconds),
                "bytes": s.bytes,
                "detail": s.detail,
            }
            for s in migration.steps
        ],
        **warm_fields(migration),
    }


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _downtime(report: dict[str, Any]) -> str:
    verified, back = report["downtime_to_verified_seconds"], report["downtime_to_source_back_seconds"]
    if back is not None:
        return f"{back:.1f}s (until source back on)"
    if verified is not None:
        return f"{verified:.1f}s (until target verified)"
    if report["source_off_since"] is not None:
        return f"source off since {report['source_off_since']}"
    return "-"


def _row(report: dict[str, Any]) -> dict[str, Any]:
    return {
        **report,
        "current_step": report["current_step"] or "-",
        "downtime": _downtime(report),
        "moved": human_bytes(report["bytes_moved"]),
        "note": report["where"] or report["error"] or "",
    }


@click.command(
    epilog="""\b
Examples:
  migrator status                      # every migration recorded on this machine
  migrator status --vm web01           # one VM, step by step, and its log file
  migrator status -o json | jq '.[] | select(.status == "failed") | .vm'
  migrator status -o name              # the VM names only"""
)
@click.option("--vm", "vm_name", help="Only this VM (source or target name).")
@output_options()
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), help="Migration state directory.")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Show the guest inspections `convert` wrote here.",
)
def status(vm_name: str | None, output: str, no_headers: bool, state_dir: Path | None, output_dir: Path | None) -> None:
    """Show where every VM's migration stands: step, downtime, bytes moved, and what to do next."""
    if output_dir is not None:
        _converted(output_dir, vm_name, output)
        return
    store = StateStore(state_dir)
    try:
        if vm_name:
            migration = store.get(vm_name)
            if migration is None:
                raise NotFoundError(f"no migration recorded for VM {vm_name!r} in {store.path}")
            migrations = [migration]
        else:
            migrations = store.all()
        reports = [migration_report(m, runs.where(store, m)) for m in migrations]
    finally:
        store.close()
    if output in ("table", "wide") and not reports:
        click.echo("no migrations recorded", err=True)
        return
    document: Any = reports[0] if vm_name else reports
    text = render(
        document,
        output,
        rows=[_row(r) for r in reports],
        columns=COLUMNS,
        no_headers=no_headers,
        names=[r["vm"] for r in reports],
    )
    click.echo(text)
    if vm_name and output in ("table", "wide"):
        report = reports[0]
        if report["log_file"]:
            click.echo(f"log: {report['log_file']}")
        step_width = max((len(step["step"]) for step in report["steps"]), default=0)  # convert-guest: 13
        for step in report["steps"]:
            seconds = "-" if step["seconds"] is None else f"{step['seconds']:.2f}s"
            line = f"  {step['step']:<{step_width}} {step['status']:<8} {seconds:>9}  {step['detail'] or ''}"
            click.echo(line.rstrip())
        for line in warm_lines(report):
            click.echo(line)
        if report["inspection"]:
            for line in _inspection_lines(report["inspection"]):
                click.echo(line)


def _converted(output_dir: Path, vm_name: str | None, output: str) -> None:
    """The guests `convert --output-dir DIR` converted, from DIR/.migrator/inspection-<vm>.json."""
    found = sorted((output_dir / ".migrator").glob("inspection-*.json"))
    inspections = [guest.read_inspection(output_dir, p.stem.removeprefix("inspection-")) for p in found]
    chosen = [i for i in inspections if i is not None and (vm_name is None or i.vm == vm_name)]
    if vm_name and not chosen:
        raise NotFoundError(f"no guest inspection for VM {vm_name!r} in {output_dir / '.migrator'}")
    if output == "json":
        click.echo(json.dumps([i.to_dict() for i in chosen], indent=2))
        return
    if not chosen:
        click.echo(f"no converted guests in {output_dir}")
    for inspection in chosen:
        click.echo(inspection.vm)
        for line in _inspection_lines(inspection.to_dict()):
            click.echo(line)
