"""`migrator status`: where every VM's migration stands, with timings and downtime."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from core.errors import NotFoundError
from migrator.cli.status_warm import warm_fields, warm_lines
from migrator.cutover.state import Migration, StateStore
from migrator.planning.table import aligned, human_bytes


def migration_report(migration: Migration) -> dict[str, Any]:
    return {
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
        **warm_fields(migration),
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
def status(vm_name: str | None, fmt: str, state_dir: Path | None) -> None:
    """Show where every VM's migration stands."""
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
            for line in warm_lines(reports[0]):
                click.echo(line)
    else:
        click.echo("no migrations recorded")
