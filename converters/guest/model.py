"""What a guest conversion takes and gives: typed, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Accelerator = Literal["kvm", "tcg"]


@dataclass(frozen=True)
class GuestDisk:
    path: Path  # the TARGET image (never the source disk)
    format: str = "raw"  # raw | qcow2
    source_bus: str = "scsi"  # the bus the disk hung on at the source: scsi | sata | ide | nvme


@dataclass(frozen=True)
class GuestNic:
    mac: str
    source_model: str = "vmxnet3"  # vmxnet3, e1000, e1000e, ...
    old_name: str | None = None  # the name the guest gave it at the source (ens192), when derivable
    network: str | None = None


@dataclass(frozen=True)
class ConversionRequest:
    name: str  # the VM's name (target name)
    disks: tuple[GuestDisk, ...]
    nics: tuple[GuestNic, ...] = ()
    memory_mib: int = 1024
    vcpus: int = 1
    firmware: str = "bios"  # bios | efi
    root: str = "first"  # virt-v2v --root: first | ask | single | /dev/sdX
    windows: bool = False  # the source says the guest is Windows (no MAC pinning: no shell in the guest)
    virtio_win: str | None = None  # VIRTIO_WIN: an ISO or directory of virtio-win drivers
    accelerator: Accelerator = "tcg"  # decided by the caller's accelerator probe
    state_dir: Path = Path(".")  # where overlays, the state record and the log live


@dataclass
class NicPin:
    mac: str
    name: str
    method: str  # "systemd-link" | "udev-rule"
    configured_in: list[str] = field(default_factory=list)  # guest files naming the interface

    @property
    def verified(self) -> bool:
        """The guest's own network configuration names the pinned interface."""
        return bool(self.configured_in)


@dataclass
class Inspection:
    """What virt-v2v found in (and did to) the guest."""

    vm: str
    os_type: str | None = None  # linux | windows
    distro: str | None = None  # debian, rhel, ubuntu, windows ...
    osinfo: str | None = None  # libosinfo short id: debian12, win2k19 ...
    major_version: int | None = None
    minor_version: int | None = None
    product_name: str | None = None
    arch: str | None = None
    firmware: str | None = None  # bios | uefi
    root: str | None = None  # the guest's root device as the appliance saw it
    package_format: str | None = None
    block_bus: str | None = None  # virtio-blk | virtio-scsi | ide ...
    net_bus: str | None = None  # virtio-net | e1000 ...
    drivers: list[str] = field(default_factory=list)  # virtio devices the guest now drives
    removed: list[str] = field(default_factory=list)  # packages virt-v2v removed (VMware tools)
    warnings: list[str] = field(default_factory=list)
    nic_pins: list[NicPin] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # phase → seconds
    converted: bool = True  # False: --skip-conversion, nothing was done to the guest
    tool: str = "virt-v2v-in-place"

    @property
    def virtio_ready(self) -> bool:
        return self.block_bus in ("virtio-blk", "virtio-scsi") and self.net_bus == "virtio-net"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Inspection:
        values = dict(data)
        values["nic_pins"] = [NicPin(**p) for p in values.get("nic_pins", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def display_name(self) -> str:
        """ "Debian 12.15": libguestfs gives some guests' product name as just a version ("12.15")."""
        product = self.product_name or ""
        distro = (self.distro or "").capitalize()
        if product and any(c.isalpha() for c in product):
            return product
        version = product or ".".join(str(v) for v in (self.major_version, self.minor_version) if v is not None)
        return " ".join(x for x in (distro, version) if x) or "unknown OS"

    def summary(self) -> str:
        parts = [self.display_name, self.firmware or "", f"disk {self.block_bus}" if self.block_bus else ""]
        if self.net_bus:
            parts.append(f"nic {self.net_bus}")
        return ", ".join(p for p in parts if p)
