"""Which waiting VMs may start now: VMs in flight, and disks per ESXi host, as Forklift counts them.

Pure decisions over small dataclasses. Forklift's vSphere scheduler
(pkg/controller/plan/scheduler/vsphere) counts, per ESXi host, the disks of every VM whose
migration runs and has not yet finished copying: a VM costs its number of disks until its disk
transfer is done, then nothing (creating and starting the VM use no source bandwidth). A VM
starts when its cost fits under the host's limit beside what is in flight there; a VM with more
disks than the limit starts only when nothing else is in flight on its host. Forklift subtracts
disks already copied (one CDI import per disk); our transfer step copies a VM's disks together,
so a VM costs all its disks until the step ends. VMs whose host is unknown share one bucket.
On top, ``max_in_flight`` bounds the VMs migrating at once, whatever their step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

FORKLIFT_DEFAULT_DISKS_PER_HOST = 20  # Forklift's MAX_VM_INFLIGHT default
UNKNOWN_HOST = ""


@dataclass(frozen=True)
class Limits:
    max_in_flight: int = 4
    max_disks_per_host: int = FORKLIFT_DEFAULT_DISKS_PER_HOST


@dataclass(frozen=True)
class Waiting:
    vm: str
    host: str | None
    disks: int


@dataclass(frozen=True)
class InFlight:
    vm: str
    host: str | None
    disks: int
    transferred: bool  # its transfer step is done: it no longer counts against its host


def cost(vm: InFlight) -> int:
    return 0 if vm.transferred else vm.disks


def startable(waiting: Sequence[Waiting], in_flight: Sequence[InFlight], limits: Limits) -> list[str]:
    """The waiting VMs to start now, in their order (a VM that does not fit never blocks a later one)."""
    slots = limits.max_in_flight - len(in_flight)
    per_host: dict[str, int] = {}
    for vm in in_flight:
        key = vm.host or UNKNOWN_HOST
        per_host[key] = per_host.get(key, 0) + cost(vm)
    chosen: list[str] = []
    for vm in waiting:
        if slots <= 0:
            break
        key = vm.host or UNKNOWN_HOST
        busy = per_host.get(key, 0)
        fits = busy + vm.disks <= limits.max_disks_per_host
        oversized_alone = vm.disks > limits.max_disks_per_host and busy == 0
        if fits or oversized_alone:
            chosen.append(vm.vm)
            per_host[key] = busy + vm.disks
            slots -= 1
    return chosen
