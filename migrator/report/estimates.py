"""How long moving each VM takes, and what each estimate rests on. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass

from core.plan import Plan, PlannedVM
from core.units import human_rate
from migrator.planning.throughput import LOCAL

# Assumptions, stated on the report next to every figure that uses them.
DEFAULT_THROUGHPUT = 100 * 2**20  # bytes/s: what Forklift's users commonly see from one datastore
BOOT_SECONDS = 120.0  # source shutdown + target start + verification, for a typical guest
WARM_CHANGE_FRACTION = 0.01  # share of allocated data that changes between the last precopy and cutover


@dataclass(frozen=True)
class ThroughputBasis:
    """The rate that turns bytes into time, and where it comes from."""

    bytes_per_second: float
    basis: str  # "given", "measured", "assumed"
    detail: str  # one sentence a reader can check
    per_datastore: dict[str, float]  # measured rates; datastores not listed use bytes_per_second

    def rate_for(self, datastore: str | None) -> float:
        return self.per_datastore.get(datastore or "", self.bytes_per_second)


def throughput_basis(given: float | None, measured: dict[str, float]) -> ThroughputBasis:
    if given is not None:
        return ThroughputBasis(given, "given", f"{human_rate(given)}, as given with --throughput", {})
    if measured:
        slowest = min(measured.values())
        names = ", ".join(f"{ds} {human_rate(rate)}" for ds, rate in sorted(measured.items()))
        detail = f"measured by `migrator plan --measure-throughput` ({names}); other datastores at the slowest"
        return ThroughputBasis(slowest, "measured", detail, dict(measured))
    detail = (
        f"{human_rate(DEFAULT_THROUGHPUT)} assumed (no --throughput given, nothing measured): "
        "run `migrator plan --measure-throughput` for a real figure"
    )
    return ThroughputBasis(DEFAULT_THROUGHPUT, "assumed", detail, {})


@dataclass(frozen=True)
class VmEstimate:
    name: str
    transfer_bytes: int
    transfer_seconds: float
    cold_downtime_seconds: float  # everything is copied while the VM is off
    warm_downtime_seconds: float | None  # only the last delta while it is off; None without CBT
    warm_note: str


def vm_estimate(planned: PlannedVM, basis: ThroughputBasis) -> VmEstimate:
    seconds = sum(disk.transfer_bytes / basis.rate_for(disk.datastore or LOCAL) for disk in planned.disks)
    warm: float | None = seconds * WARM_CHANGE_FRACTION + BOOT_SECONDS
    note = "final delta + boot"
    if planned.vm.cbt_enabled is False:
        warm, note = None, "needs changed-block tracking (cbt-disabled)"
    return VmEstimate(
        name=planned.source_name,
        transfer_bytes=planned.transfer_bytes,
        transfer_seconds=seconds,
        cold_downtime_seconds=seconds + BOOT_SECONDS,
        warm_downtime_seconds=warm,
        warm_note=note,
    )


@dataclass(frozen=True)
class GroupEstimate:
    name: str
    vms: int
    transfer_bytes: int
    transfer_seconds: float  # the group's transfers share the throughput: bytes over one rate


def group_estimate(name: str, estimates: list[VmEstimate]) -> GroupEstimate:
    return GroupEstimate(
        name=name,
        vms=len(estimates),
        transfer_bytes=sum(e.transfer_bytes for e in estimates),
        transfer_seconds=sum(e.transfer_seconds for e in estimates),
    )


def assumptions() -> list[str]:
    return [
        "Transfer time is the bytes to copy (allocated data; the full capacity where the source "
        "could not tell the allocation) divided by that throughput; VMs moved together share it.",
        f"Cold downtime is the whole transfer plus {BOOT_SECONDS:.0f} s for shutdown, start and verification.",
        f"Warm downtime is the final delta ({WARM_CHANGE_FRACTION:.0%} of the data assumed changed since the "
        f"last precopy) plus the same {BOOT_SECONDS:.0f} s; it needs changed-block tracking on the VM.",
    ]


def plan_estimates(plan: Plan, basis: ThroughputBasis) -> list[VmEstimate]:
    return [vm_estimate(planned, basis) for planned in plan.vms]
