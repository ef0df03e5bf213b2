"""What became of each VM of a `migrate` run, the summary table at its end, and the exit status."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from migrator.planning.table import aligned, human_bytes

MIGRATED = "migrated"
ALREADY = "already migrated"  # completed by an earlier run: not done again
FAILED = "failed"
CANCELLED = "cancelled"
SKIPPED = "skipped"
INTERRUPTED = "interrupted"
EXIT_FAILED = 4
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Outcome:
    vm: str
    outcome: str
    downtime_seconds: float | None = None
    bytes_moved: int = 0
    duration_seconds: float | None = None
    error: str | None = None
    wave: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("downtime_seconds", "duration_seconds"):
            if data[key] is not None:
                data[key] = round(data[key], 3)
        return data


def exit_status(outcomes: Sequence[Outcome]) -> int:
    """0 when every VM that ran is migrated (skipped and cancelled VMs are not failures), 4 otherwise."""
    if any(o.outcome == INTERRUPTED for o in outcomes):
        return EXIT_INTERRUPTED
    return EXIT_FAILED if any(o.outcome == FAILED for o in outcomes) else 0


HEADERS = ("VM", "OUTCOME", "DOWNTIME", "BYTES", "DURATION", "ERROR")


def rows(outcomes: Sequence[Outcome]) -> list[tuple[str, ...]]:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}s"

    return [
        (
            o.vm,
            o.outcome,
            seconds(o.downtime_seconds),
            human_bytes(o.bytes_moved),
            seconds(o.duration_seconds),
            o.error or "",
        )
        for o in outcomes
    ]


def counts(outcomes: Sequence[Outcome]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for o in outcomes:
        totals[o.outcome] = totals.get(o.outcome, 0) + 1
    return totals


def headline(outcomes: Sequence[Outcome]) -> str:
    parts = ", ".join(f"{n} {what}" for what, n in counts(outcomes).items())
    return f"{len(outcomes)} VM(s): {parts}" if outcomes else "no VM migrated"


def plain_table(outcomes: Sequence[Outcome]) -> str:
    return "\n".join(aligned(HEADERS, rows(outcomes)))
