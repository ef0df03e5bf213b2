"""Disks and CD-ROMs: bus, boot order, sharing."""

from __future__ import annotations

from typing import Any

from core.inventory import VM, CdRom, ControllerKind, Disk, Sharing
from core.plan import PlannedDisk

# VMware's BIOS lists IDE drives before SATA, SCSI and NVMe: "first controller" follows that order.
_CONTROLLER_ORDER = {ControllerKind.IDE: 0, ControllerKind.SATA: 1, ControllerKind.SCSI: 2, ControllerKind.NVME: 3}
# Closest KubeVirt bus when the guest has no virtio drivers. KubeVirt has no IDE (q35) and no NVMe bus.
_COMPAT_BUS = {
    ControllerKind.IDE: "sata",
    ControllerKind.SATA: "sata",
    ControllerKind.SCSI: "scsi",
    ControllerKind.NVME: "sata",
}


def disk_position(disk: Disk) -> tuple[int, int, int]:
    return (_CONTROLLER_ORDER.get(disk.controller.kind, 9), disk.controller.bus_number, disk.unit_number)


def _device_id(disk: Disk) -> str:
    """The VMX-style device id ("scsi0:1", "ide0:0", "sata0:2", "nvme0:0") the BIOS boot settings use."""
    return f"{disk.controller.kind.value}{disk.controller.bus_number}:{disk.unit_number}"


def boot_disk(vm: VM, disks: list[Disk]) -> Disk | None:
    """The source's boot disk: the one ``bios.hddOrder`` names, else the first disk on the first controller."""
    if not disks:
        return None
    wanted = (vm.extra_config.get("bios.hddOrder") or "").split(",")[0].strip().lower()
    if wanted:
        for disk in disks:
            if _device_id(disk) == wanted:
                return disk
    return min(disks, key=disk_position)


def disk_bus(disk: Disk | None, virtio_ready: bool) -> str:
    if virtio_ready or disk is None:
        return "virtio"
    return _COMPAT_BUS.get(disk.controller.kind, "sata")


def is_shared(disk: Disk | None) -> bool:
    if disk is None:
        return False
    return disk.sharing is Sharing.MULTI_WRITER or disk.controller.shared_bus in ("virtualSharing", "physicalSharing")


def disk_entry(
    name: str, planned: PlannedDisk, source: Disk | None, *, virtio_ready: bool, boot: bool
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "disk": {"bus": disk_bus(source, virtio_ready)}}
    if boot:
        entry["bootOrder"] = 1
    if is_shared(source):
        # A disk written by several VMs at once must bypass the host page cache.
        entry["shareable"] = True
        entry["cache"] = "none"
    return entry


def cdrom_entry(name: str, cdrom: CdRom) -> dict[str, Any]:
    """An empty drive: KubeVirt has no IDE bus on q35 and no virtio CD-ROM, SATA is what every guest drives."""
    return {"name": name, "cdrom": {"bus": "sata", "readonly": True}}
