"""A disk of 0 bytes, or not a whole number of 512-byte sectors, cannot become a volume."""

from __future__ import annotations

from pathlib import Path

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext

SECTOR = 512


def check(vm: VM, context: RuleContext) -> list[Concern]:
    concerns = []
    for disk in vm.disks:
        if disk.capacity_bytes <= 0:
            local = vm.source == "vmx" and disk.backing_file and not Path(disk.backing_file).exists()
            reason = f" (its file {disk.backing_file} was not found)" if local else ""
            concerns.append(RULE.concern(f"{disk.label} has no known capacity{reason}, so it cannot be sized."))
        elif disk.capacity_bytes % SECTOR:
            concerns.append(
                RULE.concern(f"{disk.label} is {disk.capacity_bytes} bytes, not a multiple of {SECTOR}-byte sectors.")
            )
    return concerns


RULE = Rule(
    "invalid-disk-capacity",
    Severity.CRITICAL,
    check,
    "a disk's capacity is 0 or not sector-aligned",
    remedy="Fix the disk's size in vSphere (it must be non-zero and a multiple of 512 bytes).",
)
