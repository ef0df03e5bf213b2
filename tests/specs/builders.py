"""Hand-built planned VMs for the mapping tests."""

from __future__ import annotations

from core.inventory import VM, CdRom, Controller, ControllerKind, Cpu, Disk, Firmware, Nic
from core.plan import NetworkTarget, Plan, PlannedDisk, PlannedNic, PlannedVM

GIB = 1024**3
SCSI0 = Controller(kind=ControllerKind.SCSI, bus_number=0, model="pvscsi")
SCSI1 = Controller(kind=ControllerKind.SCSI, bus_number=1, model="lsilogic", shared_bus="physicalSharing")
SATA0 = Controller(kind=ControllerKind.SATA, bus_number=0, model="ahci")
IDE0 = Controller(kind=ControllerKind.IDE, bus_number=0, model="ide")
IDE1 = Controller(kind=ControllerKind.IDE, bus_number=1, model="ide")


def source_vm(**overrides: object) -> VM:
    vm = VM(
        name="web-01",
        source="vsphere",
        cpu=Cpu(sockets=2, cores_per_socket=4),
        memory_mib=4096,
        disks=[
            Disk(
                label="Hard disk 1",
                capacity_bytes=20 * GIB,
                controller=SCSI0,
                unit_number=0,
                backing_file="[datastore1] web-01/web-01.vmdk",
                datastore="datastore1",
            ),
            Disk(
                label="Hard disk 2",
                capacity_bytes=5 * GIB,
                controller=SCSI0,
                unit_number=1,
                backing_file="[datastore1] web-01/web-01_1.vmdk",
                datastore="datastore1",
            ),
        ],
        nics=[
            Nic(label="Network adapter 1", model="vmxnet3", mac="00:50:56:AA:BB:01", network="VM Network"),
            Nic(label="Network adapter 2", model="vmxnet3", mac="00:50:56:aa:bb:02", network="Storage"),
            Nic(label="Network adapter 3", model="e1000", mac="00:50:56:aa:bb:03", network="Backup"),
        ],
        cdroms=[CdRom(label="CD/DVD drive 1", controller=IDE1, unit_number=0)],
        controllers=[SCSI0, IDE1],
        moref="vm-42",
        instance_uuid="5012a3b4-0000-1111-2222-333344445555",
        bios_uuid="4231a8c1-2b3c-4d5e-8f90-a1b2c3d4e5f6",
        guest_id="rhel8_64Guest",
    )
    for key, value in overrides.items():
        setattr(vm, key, value)
    return vm


def planned(vm: VM | None = None, *, nic_targets: list[tuple[NetworkTarget, str | None]] | None = None) -> PlannedVM:
    vm = vm or source_vm()
    targets = nic_targets or [
        (NetworkTarget.POD, None),
        (NetworkTarget.MULTUS, "storage-ns/storage-net"),
        (NetworkTarget.IGNORE, None),
    ]
    disks = [
        PlannedDisk(
            label=d.label,
            claim_name=f"{vm.name}-disk-{i}",
            storage_class="fast",
            capacity_bytes=d.capacity_bytes,
            transfer_bytes=d.transfer_bytes,
            source_file=d.backing_file,
            datastore=d.datastore,
        )
        for i, d in enumerate(vm.disks)
    ]
    nics = [
        PlannedNic(label=n.label, mac=n.mac, source_network=n.network, target=t, multus=m)
        for n, (t, m) in zip(vm.nics, targets, strict=False)
    ]
    return PlannedVM(source_name=vm.name, target_name=vm.name, vm=vm, disks=disks, nics=nics)


def plan_of(*vms: PlannedVM) -> Plan:
    return Plan(name="wave-1", source="vsphere://admin@vc.example.com/DC0", target_namespace="migrated", vms=list(vms))


__all__ = ["Firmware", "planned", "plan_of", "source_vm", "SCSI1", "SATA0", "IDE0", "GIB"]
