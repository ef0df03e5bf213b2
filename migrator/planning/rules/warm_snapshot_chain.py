"""A VM planned warm with snapshots of its own: the warm copy cannot read its disks.

A warm migration reads the base disk file a snapshot freezes; under an earlier snapshot that file
holds the older snapshot's state, not the VM's. Forklift refuses such a chain too.
"""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if context.planned.type != "warm":
        return []
    theirs = [s.name for s in vm.snapshots if not s.name.startswith("migrator-")]
    if not theirs:
        return []
    names = ", ".join(repr(n) for n in theirs[:5]) + (" …" if len(theirs) > 5 else "")
    return [
        RULE.concern(
            f"The VM has {len(theirs)} snapshot(s) ({names}): a warm migration cannot read its disks under them; "
            "remove or consolidate them, or migrate it cold."
        )
    ]


RULE = Rule(
    "warm-snapshot-chain",
    Severity.CRITICAL,
    check,
    "a warm migration of a VM with snapshots",
    remedy="Delete or consolidate the VM's snapshots before a warm migration, or migrate it cold.",
)
