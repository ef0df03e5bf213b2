"""Estate totals of a plan: what `plan -o json` prints under ``summary`` and the report shows.

A pure function over the plan model. Allocation the source could not tell is kept apart from
allocation it did tell, so a total never claims a disk is empty because nobody measured it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from core.plan import Plan, PlannedVM, Severity


class Readiness(StrEnum):
    READY = "ready"  # no concern above Information
    WARNINGS = "warnings"  # Warnings, nothing Critical
    BLOCKED = "blocked"  # at least one Critical concern


def readiness(planned: PlannedVM) -> Readiness:
    severities = {c.severity for c in planned.concerns}
    if Severity.CRITICAL in severities:
        return Readiness.BLOCKED
    if Severity.WARNING in severities:
        return Readiness.WARNINGS
    return Readiness.READY


@dataclass(frozen=True)
class EstateTotals:
    vms: int
    ready: int
    warnings: int
    blocked: int
    vcpus: int
    memory_bytes: int
    disks: int
    provisioned_bytes: int  # the disks' capacity
    allocated_bytes: int  # stored bytes, over the disks whose source told them
    unknown_allocation_disks: int  # disks whose source could not tell what they store
    unknown_allocation_bytes: int  # those disks' capacity: the upper bound of what they store
    transfer_bytes: int  # what must cross the wire (capacity counted where allocation is unknown)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def allocation_known(planned: PlannedVM) -> list[tuple[int, int | None]]:
    """(capacity, allocated or None) for each planned disk, from the source's facts."""
    by_label = {disk.label: disk for disk in planned.vm.disks}
    pairs: list[tuple[int, int | None]] = []
    for disk in planned.disks:
        source = by_label.get(disk.label)
        allocated = source.allocated_bytes if source is not None else None
        pairs.append((disk.capacity_bytes, allocated if allocated else None))
    return pairs


def totals(plan: Plan) -> EstateTotals:
    counts = dict.fromkeys(Readiness, 0)
    allocated = unknown_disks = unknown_bytes = 0
    for planned in plan.vms:
        counts[readiness(planned)] += 1
        for capacity, stored in allocation_known(planned):
            if stored is None:
                unknown_disks += 1
                unknown_bytes += capacity
            else:
                allocated += stored
    return EstateTotals(
        vms=len(plan.vms),
        ready=counts[Readiness.READY],
        warnings=counts[Readiness.WARNINGS],
        blocked=counts[Readiness.BLOCKED],
        vcpus=sum(v.vm.cpu.vcpus for v in plan.vms),
        memory_bytes=sum(v.vm.memory_mib for v in plan.vms) * 2**20,
        disks=sum(len(v.disks) for v in plan.vms),
        provisioned_bytes=sum(d.capacity_bytes for v in plan.vms for d in v.disks),
        allocated_bytes=allocated,
        unknown_allocation_disks=unknown_disks,
        unknown_allocation_bytes=unknown_bytes,
        transfer_bytes=sum(v.transfer_bytes for v in plan.vms),
    )
