"""What `migrator status` adds for a warm migration: each round, the next precopy, full-copy fallbacks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from migrator.cutover.precopy import CUTOVER_AT, CUTOVER_REQUESTED, NEXT_PRECOPY, ROUNDS, WARM
from migrator.cutover.state import Migration
from migrator.planning.table import human_bytes


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def warm_fields(migration: Migration) -> dict[str, Any]:
    """``type``, and for a warm migration ``rounds``, ``next_precopy_at``, the cutover request, fallbacks."""
    facts = migration.facts
    if WARM not in facts:
        return {"type": "cold"}
    rounds = []
    fallbacks = []
    for r in facts.get(ROUNDS, []):
        seconds = r.get("seconds")
        rounds.append(
            {
                "round": r["round"],
                "kind": r["kind"],
                "snapshot": r["snapshot"],
                "started_at": _iso(r["started_at"]),
                "finished_at": _iso(r.get("finished_at")),
                "seconds": None if seconds is None else round(seconds, 3),
                "bytes": r.get("bytes", 0),
                "disks": {
                    claim: {k: d.get(k) for k in ("mode", "bytes", "extents", "seconds", "change_id", "note")}
                    for claim, d in (r.get("disks") or {}).items()
                },
            }
        )
        for claim, d in (r.get("disks") or {}).items():
            if d.get("note"):
                fallbacks.append(f"round {r['round']}: {claim}: {d['note']}")
    warm = facts[WARM] or {}
    return {
        "type": "warm",
        "precopy_interval_seconds": warm.get("interval"),
        "cutover_at": _iso(facts.get(CUTOVER_AT)),
        "cutover_requested_at": _iso(facts.get(CUTOVER_REQUESTED)),
        "next_precopy_at": _iso(facts.get(NEXT_PRECOPY)),
        "rounds": rounds,
        "full_copy_fallbacks": fallbacks,
    }


def warm_lines(report: dict[str, Any]) -> list[str]:
    """Lines under the step list of `migrator status --vm NAME` (table output)."""
    if report.get("type") != "warm":
        return []
    lines = []
    for r in report["rounds"]:
        seconds = "-" if r["seconds"] is None else f"{r['seconds']:.2f}s"
        modes = ", ".join(sorted({d["mode"] for d in r["disks"].values() if d.get("mode")})) or "-"
        lines.append(
            f"  round {r['round']:<3} {r['kind']:<8} {seconds:>9}  {human_bytes(r['bytes'])} ({modes}) {r['snapshot']}"
        )
    if report.get("next_precopy_at"):
        lines.append(f"  next precopy at {report['next_precopy_at']}")
    if report.get("cutover_requested_at"):
        lines.append(f"  cutover requested at {report['cutover_requested_at']}")
    lines.extend(f"  fallback: {f}" for f in report.get("full_copy_fallbacks", []))
    return lines
