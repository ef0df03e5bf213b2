"""The inventory model: what every source (vSphere, VMX, OVF/OVA) says about a VM.

Plain typed dataclasses, no I/O. Sources fill them; planning rules, spec converters and
the disk engine read them. Unknown facts are ``None`` (not False/0): a rule must be able
to tell "the source said no" from "the source could not say".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from functools import cache
from typing import Any


class Firmware(StrEnum):
    BIOS = "bios"
    EFI = "efi"


class PowerState(StrEnum):
    ON = "poweredOn"
    OFF = "poweredOff"
    SUSPENDED = "suspended"
    UNKNOWN = "unknown"


class DiskMode(StrEnum):
    PERSISTENT = "persistent"
    NONPERSISTENT = "nonpersistent"
    UNDOABLE = "undoable"
    INDEPENDENT_PERSISTENT = "independent_persistent"
    INDEPENDENT_NONPERSISTENT = "independent_nonpersistent"
    APPEND = "append"

    @property
    def independent(self) -> bool:
        return self.value.startswith("independent")


class Sharing(StrEnum):
    NONE = "sharingNone"
    MULTI_WRITER = "sharingMultiWriter"


class ControllerKind(StrEnum):
    """The bus family a disk or CD-ROM hangs on."""

    SCSI = "scsi"
    SATA = "sata"
    IDE = "ide"
    NVME = "nvme"


@dataclass
class Controller:
    """A storage controller; ``model``: pvscsi, lsilogic, lsisas1068, buslogic, ahci, ide, nvme."""

    kind: ControllerKind
    bus_number: int
    model: str
    key: int | None = None
    shared_bus: str | None = None  # SCSI bus sharing: noSharing | virtualSharing | physicalSharing


@dataclass
class Disk:
    label: str
    capacity_bytes: int
    controller: Controller
    unit_number: int
    backing_file: str | None = None  # "[datastore] folder/name.vmdk" (vSphere) or a path (VMX/OVF)
    datastore: str | None = None
    thin: bool | None = None
    eager_zeroed: bool | None = None
    sharing: Sharing = Sharing.NONE
    mode: DiskMode = DiskMode.PERSISTENT
    rdm: bool = False
    rdm_compatibility: str | None = None  # physicalMode | virtualMode
    allocated_bytes: int | None = None  # bytes actually stored, when the source can tell
    cbt_enabled: bool | None = None
    uuid: str | None = None  # the disk backing's UUID (SCSI serial source with disk.EnableUUID)
    encrypted: bool = False
    key: int | None = None
    format_hint: str | None = None  # OVF disk format URI, or "vmdk" for a .vmx source
    descriptor_problem: str | None = None  # why the disk engine would refuse this disk (read at plan time)

    @property
    def allocation_known(self) -> bool:
        """Whether the source told how much the disk holds. Zero is not "empty": sources (vCenter
        among them) report 0 when they did not count, so a zero for a non-empty disk is unknown."""
        return bool(self.allocated_bytes) or self.capacity_bytes == 0

    @property
    def transfer_bytes(self) -> int:
        """What must cross the wire: allocated bytes where known, else the capacity (an upper bound)."""
        return self.allocated_bytes or self.capacity_bytes


@dataclass
class CdRom:
    label: str
    controller: Controller
    unit_number: int
    iso_file: str | None = None  # None: empty drive, or client/host device
    connected: bool = False
    start_connected: bool = False
    key: int | None = None


@dataclass
class Nic:
    label: str
    model: str  # vmxnet3, vmxnet2, vmxnet, e1000, e1000e, pcnet32, sriov
    mac: str | None
    network: str | None  # the source network (port group) name
    connected: bool = True
    start_connected: bool = True
    key: int | None = None
    ips: list[str] = field(default_factory=list)
    pci_slot: int | None = None  # vSphere's ethernetN.pciSlotNumber: the guest named the NIC ens<slot>

    @property
    def sriov(self) -> bool:
        return self.model == "sriov"


@dataclass
class PassthroughDevice:
    label: str
    kind: str  # pci | vgpu | usb | sriov | dvx
    detail: str | None = None


@dataclass
class Cpu:
    sockets: int
    cores_per_socket: int
    hot_add: bool = False
    affinity: list[int] = field(default_factory=list)
    numa_affinity: list[int] = field(default_factory=list)

    @property
    def vcpus(self) -> int:
        return self.sockets * self.cores_per_socket


@dataclass
class Snapshot:
    name: str
    created: str | None = None
    children: int = 0


@dataclass
class ClusterFacts:
    """Facts about the cluster the VM runs in, that matter to migration."""

    name: str
    drs_enabled: bool | None = None
    drs_behavior: str | None = None  # manual | partiallyAutomated | fullyAutomated
    dpm_enabled: bool | None = None


@dataclass
class VM:
    name: str
    source: str  # "vsphere" | "vmx" | "ovf"
    cpu: Cpu
    memory_mib: int
    firmware: Firmware = Firmware.BIOS
    secure_boot: bool = False
    disks: list[Disk] = field(default_factory=list)
    nics: list[Nic] = field(default_factory=list)
    cdroms: list[CdRom] = field(default_factory=list)
    controllers: list[Controller] = field(default_factory=list)
    # identity
    moref: str | None = None  # managed object id, e.g. vm-42
    instance_uuid: str | None = None  # vCenter instance UUID
    bios_uuid: str | None = None  # SMBIOS UUID the guest sees
    folder: str | None = None  # inventory path of the VM's folder, e.g. /DC0/vm/prod
    datacenter: str | None = None
    cluster: ClusterFacts | None = None
    host: str | None = None
    # guest
    guest_id: str | None = None  # e.g. rhel8_64Guest
    guest_name: str | None = None  # e.g. "Red Hat Enterprise Linux 8 (64-bit)"
    power_state: PowerState = PowerState.UNKNOWN
    tools_status: str | None = None  # toolsOk | toolsOld | toolsNotRunning | toolsNotInstalled
    hostname: str | None = None
    ip_addresses: list[str] = field(default_factory=list)
    # features that matter to migration
    vtpm: bool = False
    cbt_enabled: bool | None = None
    snapshots: list[Snapshot] = field(default_factory=list)
    consolidation_needed: bool = False
    memory_hot_add: bool = False
    fault_tolerance: bool = False
    host_affinity: bool = False  # a DRS VM-host affinity rule names this VM
    encrypted: bool = False
    disk_enable_uuid: bool | None = None  # extraConfig disk.EnableUUID
    passthrough: list[PassthroughDevice] = field(default_factory=list)
    usb_controllers: list[str] = field(default_factory=list)  # usb, usb.ehci, usb_xhci
    is_template: bool = False
    annotation: str | None = None
    extra_config: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = plain_data(self)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VM:
        return _vm_from_dict(data)


@dataclass
class Inventory:
    """Everything one source knows: its VMs and where it was read from (never with credentials)."""

    source_url: str
    vms: list[VM] = field(default_factory=list)
    about: dict[str, str] = field(default_factory=dict)  # e.g. vCenter instance UUID, API version

    def by_name(self, name: str) -> VM | None:
        return next((vm for vm in self.vms if vm.name == name), None)


_SCALARS = (str, int, float, bool, type(None))


@cache
def _field_names(cls: type) -> tuple[str, ...] | None:
    """The dataclass fields of cls, or None when cls is not a dataclass."""
    return tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None


def plain_data(value: Any) -> Any:
    """Dataclasses, enums, lists and dicts as plain JSON/YAML data (no deep copies: asdict's cost on large plans)."""
    if isinstance(value, Enum):  # before scalars: StrEnum values are str too
        return value.value
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    if isinstance(value, dict):
        return {k: plain_data(v) for k, v in value.items()}
    names = _field_names(type(value))
    if names is not None:
        return {name: plain_data(getattr(value, name)) for name in names}
    return value


def _controller(d: dict[str, Any]) -> Controller:
    return Controller(**{**d, "kind": ControllerKind(d["kind"])})


def _vm_from_dict(data: dict[str, Any]) -> VM:
    d = dict(data)
    d["cpu"] = Cpu(**d["cpu"])
    d["firmware"] = Firmware(d.get("firmware", "bios"))
    d["power_state"] = PowerState(d.get("power_state", "unknown"))
    d["controllers"] = [_controller(c) for c in d.get("controllers", [])]
    d["disks"] = [
        Disk(
            **{
                **x,
                "controller": _controller(x["controller"]),
                "sharing": Sharing(x.get("sharing", Sharing.NONE.value)),
                "mode": DiskMode(x.get("mode", DiskMode.PERSISTENT.value)),
            }
        )
        for x in d.get("disks", [])
    ]
    d["cdroms"] = [CdRom(**{**x, "controller": _controller(x["controller"])}) for x in d.get("cdroms", [])]
    d["nics"] = [Nic(**x) for x in d.get("nics", [])]
    d["passthrough"] = [PassthroughDevice(**x) for x in d.get("passthrough", [])]
    d["snapshots"] = [Snapshot(**x) for x in d.get("snapshots", [])]
    if d.get("cluster"):
        d["cluster"] = ClusterFacts(**d["cluster"])
    return VM(**d)
