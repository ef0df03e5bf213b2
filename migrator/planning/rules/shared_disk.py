"""Multi-writer disks and shared SCSI buses need ReadWriteMany storage and care on the target."""

from __future__ import annotations

from core.inventory import VM, Sharing
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    concerns = []
    for disk in vm.disks:
        shared_bus = disk.controller.shared_bus not in (None, "noSharing")
        if disk.sharing is Sharing.MULTI_WRITER or shared_bus:
            how = "multi-writer" if disk.sharing is Sharing.MULTI_WRITER else f"on a {disk.controller.shared_bus} bus"
            concerns.append(
                RULE.concern(f"{disk.label} is shared ({how}); its storage class must offer ReadWriteMany volumes.")
            )
    return concerns


RULE = Rule(
    "shared-disk",
    Severity.WARNING,
    check,
    "a disk is shared (multi-writer or shared bus)",
    remedy="Migrate the VMs sharing the disk together and give the target a ReadWriteMany volume.",
)
