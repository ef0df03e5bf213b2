"""A vSphere disk whose backing is not on any datastore cannot be read through the datastore API."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if vm.source != "vsphere":
        return []  # VMX/OVF disks are local files, read directly
    return [
        RULE.concern(f"{d.label} is not located on a datastore, so it cannot be transferred.")
        for d in vm.disks
        if not d.datastore
    ]


RULE = Rule(
    "disk-not-on-datastore",
    Severity.CRITICAL,
    check,
    "a disk is not on a datastore",
    remedy="Move the disk onto a datastore (Storage vMotion), or exclude the VM.",
)
