"""Refuse a VM with Critical concerns unless the user named every one of them with --force."""

from __future__ import annotations

from collections.abc import Iterable

from core.errors import BlockedError
from core.plan import PlannedVM


def split_forced(values: Iterable[str]) -> set[str]:
    """--force takes ids one per flag or comma-separated."""
    return {part.strip() for value in values for part in value.split(",") if part.strip()}


def check_not_blocked(planned: PlannedVM, forced: Iterable[str]) -> list[str]:
    """Return the Critical concern ids overridden by --force; raise BlockedError naming those still blocking."""
    forced_ids = split_forced(forced)
    critical = planned.critical_ids()
    missing = [cid for cid in critical if cid not in forced_ids]
    if missing:
        flags = " ".join(f"--force {cid}" for cid in missing)
        raise BlockedError(
            f"VM {planned.source_name} has Critical concerns: {', '.join(missing)} (convert anyway with {flags})"
        )
    return critical


def unknown_forced(planned: PlannedVM, forced: Iterable[str]) -> list[str]:
    """--force ids that are not Critical concerns of this VM (a typo, or a concern since resolved)."""
    critical = set(planned.critical_ids())
    return sorted(cid for cid in split_forced(forced) if cid not in critical)
