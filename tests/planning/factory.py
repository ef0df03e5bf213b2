"""Small inventory VMs for rule and planner tests (plain dataclasses: nothing to mock)."""

from __future__ import annotations

from core.inventory import VM, Controller, ControllerKind, Cpu, Disk, Nic
from core.plan import Plan
from migrator.planning.mapping import Maps
from migrator.planning.planner import PlanOptions, build_plan

SCSI0 = Controller(ControllerKind.SCSI, 0, "pvscsi")


def _mac(number: int, nic: int) -> str:
    """A MAC per (VM number, NIC index); VMs made with the same number share MACs."""
    return f"00:50:{number >> 16 & 255:02x}:{number >> 8 & 255:02x}:{number & 255:02x}:{nic:02x}"


def make_vm(
    name: str = "web01", source: str = "vsphere", disks: int = 1, nics: int = 1, unique_macs: int | None = None, **facts
) -> VM:
    vm = VM(
        name=name,
        source=source,
        cpu=Cpu(sockets=1, cores_per_socket=2),
        memory_mib=2048,
        disks=[
            Disk(
                label=f"Hard disk {i + 1}",
                capacity_bytes=10 * 2**30,
                controller=SCSI0,
                unit_number=i,
                backing_file=f"[ds1] {name}/{name}_{i}.vmdk",
                datastore="ds1",
                allocated_bytes=2**30,
            )
            for i in range(disks)
        ],
        nics=[
            Nic(
                label=f"Network adapter {i + 1}",
                model="vmxnet3",
                mac=_mac(unique_macs or 0, i),
                network="VM Network",
            )
            for i in range(nics)
        ],
        hostname=f"{name}.example.com",
        ip_addresses=["10.0.0.5"],
    )
    for key, value in facts.items():
        setattr(vm, key, value)
    return vm


def plan_of(*vms: VM, maps: Maps | None = None) -> Plan:
    return build_plan(list(vms), maps or Maps(), PlanOptions(name="test", source="vsphere://u@vc"))


def ids(vm: VM, maps: Maps | None = None) -> list[str]:
    return [c.id for c in plan_of(vm, maps=maps).vms[0].concerns]
