"""Delta disks left over from deleted snapshots slow every copy; consolidate first."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if not vm.consolidation_needed:
        return []
    return [RULE.concern("The VM's disks need snapshot consolidation; consolidate them in VMware before migrating.")]


RULE = Rule(
    "consolidation-needed",
    Severity.INFORMATION,
    check,
    "the VM's disks need consolidation",
    remedy="Consolidate the VM's disks in vSphere (Snapshots > Consolidate) before migrating.",
)
