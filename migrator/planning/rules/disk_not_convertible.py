"""A disk that convert would refuse (a descriptor it cannot read, an extent missing, outside the
disk's folder or of a kind it does not copy): known at plan time from the disk engine's own
parser, with the very line convert would print."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    return [
        RULE.concern(f"{d.label} cannot be converted: {d.descriptor_problem}") for d in vm.disks if d.descriptor_problem
    ]


RULE = Rule(
    "disk-not-convertible",
    Severity.CRITICAL,
    check,
    "convert would refuse a disk's VMDK",
    remedy="Repair the VMDK named in the message (a missing or damaged descriptor or extent file), or consolidate "
    "the VM's snapshots in vSphere so that it has plain disks, then plan again.",
)
