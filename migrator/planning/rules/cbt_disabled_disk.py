"""CBT on for the VM but off for a disk: that disk cannot be copied incrementally."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if vm.cbt_enabled is not True:
        return []
    return [
        RULE.concern(f"Changed Block Tracking is off for {d.label}, so it cannot be copied incrementally.")
        for d in vm.disks
        if d.cbt_enabled is False
    ]


RULE = Rule(
    "cbt-disabled-disk",
    Severity.WARNING,
    check,
    "changed block tracking is off for a disk",
    remedy="Enable CBT on the disk (scsiX:Y.ctkEnabled = TRUE) before a warm migration, or migrate cold.",
)
