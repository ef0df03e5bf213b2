"""Snapshots are not carried over: the migrated VM is the current state only."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if not vm.snapshots:
        return []
    names = ", ".join(repr(s.name) for s in vm.snapshots[:5]) + (" …" if len(vm.snapshots) > 5 else "")
    return [RULE.concern(f"The VM has {len(vm.snapshots)} snapshot(s) ({names}); they are not migrated.")]


RULE = Rule(
    "snapshots-present",
    Severity.INFORMATION,
    check,
    "the VM has snapshots",
    remedy="Delete or consolidate the snapshots; only the current state is migrated.",
)
