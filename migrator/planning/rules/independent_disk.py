"""Independent disks are left out of snapshots, so they cannot be copied consistently."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    return [
        RULE.concern(f"{d.label} is in {d.mode.value} mode; change it to dependent mode in VMware before migrating.")
        for d in vm.disks
        if d.mode.independent
    ]


RULE = Rule(
    "independent-disk",
    Severity.CRITICAL,
    check,
    "a disk is in independent mode",
    remedy="Change the disk to dependent mode in vSphere, so it can be snapshotted and copied.",
)
