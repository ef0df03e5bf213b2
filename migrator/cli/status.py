"""`migrator status`: where every VM's migration stands, with timings and downtime."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from core.errors import NotFoundError
from migrator.convert import guest
from migrator.cutover.state import Migration, StateStore
from migrator.planning.table import aligned, human_bytes


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
        lines.append(
            f"  nic          {pin.mac} keeps {pin.name} ({pin.method}, named in {', '.join(pin.configured_in)})"
        )
    for warning in inspection.warnings:
        lines.append(f"  warning      {warning}")
    return lines


def migration_report(migration: Migration) -> dict[str, Any]:
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
        "downtime_seconds": _round(migration.downtime_seconds),
        "downtime_to_verified_seconds": _round(migration.downtime_to_verified_seconds),
        "bytes_moved": migration.bytes_moved,
        "error": migration.error,
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
    }


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _table(reports: list[dict[str, Any]]) -> str:
    headers = ("VM", "STATUS", "STEP", "DOWNTIME", "MOVED", "ERROR")
    rows = [
        (
            r["vm"],
            r["status"],
            r["current_step"] or "-",
            "-" if r["downtime_seconds"] is None else f"{r['downtime_seconds']:.1f}s",
            human_bytes(r["bytes_moved"]),
            r["error"] or "",
        )
        for r in reports
    ]
    return "\n".join(aligned(headers, rows))


@click.command()
@click.option("--vm", "vm_name", help="Only this VM (source or target name).")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), help="Migration state directory.")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Show the guest inspections `convert` wrote here.",
)
def status(vm_name: str | None, fmt: str, state_dir: Path | None, output_dir: Path | None) -> None:
    """Show where every VM's migration stands."""
    if output_dir is not None:
        _converted(output_dir, vm_name, fmt)
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
    finally:
        store.close()
    reports = [migration_report(m) for m in migrations]
    if fmt == "json":
        click.echo(json.dumps(reports[0] if vm_name else reports, indent=2))
    elif reports:
        click.echo(_table(reports))
        if vm_name:
            for step in reports[0]["steps"]:
                seconds = "-" if step["seconds"] is None else f"{step['seconds']:.2f}s"
                click.echo(f"  {step['step']:<12} {step['status']:<8} {seconds:>9}  {step['detail'] or ''}".rstrip())
            if reports[0]["inspection"]:
                for line in _inspection_lines(reports[0]["inspection"]):
                    click.echo(line)
    else:
        click.echo("no migrations recorded")


def _converted(output_dir: Path, vm_name: str | None, fmt: str) -> None:
    """The guests `convert --output-dir DIR` converted, from DIR/.migrator/inspection-<vm>.json."""
    found = sorted((output_dir / ".migrator").glob("inspection-*.json"))
    inspections = [guest.read_inspection(output_dir, p.stem.removeprefix("inspection-")) for p in found]
    chosen = [i for i in inspections if i is not None and (vm_name is None or i.vm == vm_name)]
    if vm_name and not chosen:
        raise NotFoundError(f"no guest inspection for VM {vm_name!r} in {output_dir / '.migrator'}")
    if fmt == "json":
        click.echo(json.dumps([i.to_dict() for i in chosen], indent=2))
        return
    if not chosen:
        click.echo(f"no converted guests in {output_dir}")
    for inspection in chosen:
        click.echo(inspection.vm)
        for line in _inspection_lines(inspection.to_dict()):
            click.echo(line)
