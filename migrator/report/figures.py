"""Everything the report shows, computed from the plan alone. Pure functions over the plan model."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from core.inventory import VM
from core.plan import Plan, PlannedVM, Severity
from migrator.planning.rules import RULES
from migrator.planning.summary import EstateTotals, Readiness, allocation_known, readiness, totals
from migrator.report.estimates import (
    GroupEstimate,
    ThroughputBasis,
    VmEstimate,
    assumptions,
    group_estimate,
    plan_estimates,
)

LARGEST = 10  # how many of the largest VMs the report lists
_WINDOWS = re.compile(r"^win|windows", re.IGNORECASE)
_LINUX = re.compile(
    r"linux|rhel|centos|debian|ubuntu|sles|suse|fedora|oracle|rocky|alma|photon|coreos|amazon|asianux",
    re.IGNORECASE,
)
_OTHER_UNIX = re.compile(r"bsd|solaris|darwin|netware|os2|dos", re.IGNORECASE)


def os_family(vm: VM) -> str:
    """Windows, Linux, Other, or Unknown when the source names no guest OS."""
    text = f"{vm.guest_id or ''} {vm.guest_name or ''}".strip()
    if not text:
        return "Unknown"
    if _WINDOWS.search(text):
        return "Windows"
    if _LINUX.search(text):
        return "Linux"
    if _OTHER_UNIX.search(text):
        return "Other"
    return "Other"


@dataclass
class Breakdown:
    """One row of a by-X table: how much of the estate sits in one OS family, datastore, host or cluster."""

    name: str
    vms: int = 0
    vcpus: int = 0
    memory_bytes: int = 0
    provisioned_bytes: int = 0
    allocated_bytes: int = 0
    unknown_allocation_bytes: int = 0


def _by_vm(plan: Plan, key: Callable[[PlannedVM], str]) -> list[Breakdown]:
    rows: dict[str, Breakdown] = {}
    for planned in plan.vms:
        row = rows.setdefault(key(planned), Breakdown(key(planned)))
        row.vms += 1
        row.vcpus += planned.vm.cpu.vcpus
        row.memory_bytes += planned.vm.memory_mib * 2**20
        for capacity, stored in allocation_known(planned):
            row.provisioned_bytes += capacity
            if stored is None:
                row.unknown_allocation_bytes += capacity
            else:
                row.allocated_bytes += stored
    return sorted(rows.values(), key=lambda r: (-r.provisioned_bytes, -r.vms, r.name))


def _by_datastore(plan: Plan) -> list[Breakdown]:
    """Per datastore: the disks on it (a VM spanning two datastores counts on both)."""
    rows: dict[str, Breakdown] = {}
    for planned in plan.vms:
        seen: set[str] = set()
        for disk, (capacity, stored) in zip(planned.disks, allocation_known(planned), strict=True):
            name = disk.datastore or "(no datastore)"
            row = rows.setdefault(name, Breakdown(name))
            if name not in seen:
                seen.add(name)
                row.vms += 1
                row.vcpus += planned.vm.cpu.vcpus
                row.memory_bytes += planned.vm.memory_mib * 2**20
            row.provisioned_bytes += capacity
            if stored is None:
                row.unknown_allocation_bytes += capacity
            else:
                row.allocated_bytes += stored
    return sorted(rows.values(), key=lambda r: (-r.provisioned_bytes, r.name))


@dataclass
class ConcernGroup:
    id: str
    severity: Severity
    summary: str
    remedy: str
    vms: list[str] = field(default_factory=list)
    example: str = ""  # the first VM's message, as the rule worded it


def concern_groups(plan: Plan) -> dict[Severity, list[ConcernGroup]]:
    rules = {rule.id: rule for rule in RULES}
    groups: dict[str, ConcernGroup] = {}
    for planned in plan.vms:
        for concern in planned.concerns:
            rule = rules.get(concern.id)
            group = groups.setdefault(
                concern.id,
                ConcernGroup(
                    id=concern.id,
                    severity=concern.severity,
                    summary=rule.summary if rule else concern.id,
                    remedy=rule.remedy if rule else "",
                    example=concern.message,
                ),
            )
            if planned.source_name not in group.vms:
                group.vms.append(planned.source_name)
    by_severity: dict[Severity, list[ConcernGroup]] = {severity: [] for severity in Severity}
    for group in sorted(groups.values(), key=lambda g: (-len(g.vms), g.id)):
        by_severity[group.severity].append(group)
    return by_severity


def waves(plan: Plan) -> list[tuple[str, list[PlannedVM]]]:
    """The plan's waves in order, each with its VMs (then those in no wave, which `migrate` moves last);
    one group of every VM when the plan names no waves."""
    if not plan.waves:
        return [("all VMs (the plan names no waves)", list(plan.vms))]
    by_name = {planned.source_name: planned for planned in plan.vms}
    groups: list[tuple[str, list[PlannedVM]]] = []
    placed: set[str] = set()
    for wave in plan.waves:
        members = [by_name[name] for name in wave.vms if name in by_name and name not in placed]
        placed.update(p.source_name for p in members)
        window = wave.window
        when = f" (window {window.start or '…'} – {window.end or '…'})" if window else ""
        groups.append((f"{wave.name}{when}", members))
    rest = [planned for planned in plan.vms if planned.source_name not in placed]
    if rest:
        groups.append(("in no wave (moved after the last)", rest))
    return groups


@dataclass
class VmRow:
    name: str
    target: str
    os_family: str
    readiness: Readiness
    vcpus: int
    memory_bytes: int
    provisioned_bytes: int
    transfer_bytes: int
    allocation_unknown: bool
    estimate: VmEstimate


@dataclass
class ReportData:
    plan_name: str
    source: str
    namespace: str
    created: str | None
    totals: EstateTotals
    by_os: list[Breakdown]
    by_datastore: list[Breakdown]
    by_host: list[Breakdown]
    by_cluster: list[Breakdown]
    concerns: dict[Severity, list[ConcernGroup]]
    vms: list[VmRow]
    largest: list[VmRow]
    waves: list[tuple[GroupEstimate, list[VmRow]]]
    total: GroupEstimate
    basis: ThroughputBasis
    assumptions: list[str]


def report_data(plan: Plan, basis: ThroughputBasis) -> ReportData:
    estimates = {e.name: e for e in plan_estimates(plan, basis)}
    rows: dict[str, VmRow] = {}
    for planned in plan.vms:
        rows[planned.source_name] = VmRow(
            name=planned.source_name,
            target=planned.target_name,
            os_family=os_family(planned.vm),
            readiness=readiness(planned),
            vcpus=planned.vm.cpu.vcpus,
            memory_bytes=planned.vm.memory_mib * 2**20,
            provisioned_bytes=sum(d.capacity_bytes for d in planned.disks),
            transfer_bytes=planned.transfer_bytes,
            allocation_unknown=any(stored is None for _, stored in allocation_known(planned)),
            estimate=estimates[planned.source_name],
        )
    wave_rows = []
    for name, members in waves(plan):
        members_rows = [rows[p.source_name] for p in members]
        wave_rows.append((group_estimate(name, [r.estimate for r in members_rows]), members_rows))
    ordered = list(rows.values())
    return ReportData(
        plan_name=plan.name,
        source=plan.source,
        namespace=plan.target_namespace,
        created=plan.created,
        totals=totals(plan),
        by_os=_by_vm(plan, lambda p: os_family(p.vm)),
        by_datastore=_by_datastore(plan),
        by_host=_by_vm(plan, lambda p: p.vm.host or "(unknown host)"),
        by_cluster=_by_vm(plan, lambda p: p.vm.cluster.name if p.vm.cluster else "(no cluster)"),
        concerns=concern_groups(plan),
        vms=ordered,
        largest=sorted(ordered, key=lambda r: (-r.transfer_bytes, -r.provisioned_bytes, r.name))[:LARGEST],
        waves=wave_rows,
        total=group_estimate("all VMs", [r.estimate for r in ordered]),
        basis=basis,
        assumptions=assumptions(),
    )
