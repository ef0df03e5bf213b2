"""A disk larger than its storage class can provision (when the map says the limit)."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext, gib


def check(vm: VM, context: RuleContext) -> list[Concern]:
    planned = {d.label: d for d in context.planned.disks}
    concerns = []
    for disk in vm.disks:
        limit = context.max_volume_bytes.get(disk.label)
        if limit is not None and disk.capacity_bytes > limit:
            concerns.append(
                RULE.concern(
                    f"{disk.label} is {gib(disk.capacity_bytes)}, more than storage class "
                    f"{planned[disk.label].storage_class!r} can provision ({gib(limit)})."
                )
            )
    return concerns


RULE = Rule(
    "disk-exceeds-storage-class",
    Severity.CRITICAL,
    check,
    "a disk exceeds its storage class's maximum",
    remedy="Map the datastore to a storage class that allows volumes this large, or shrink the disk first.",
)
