"""The OVF / OVA source: an OVF descriptor (with its files beside it) or an OVA tar.

Every VirtualSystem in the descriptor (a vApp's VirtualSystemCollection holds several)
becomes one VM. Hardware items are read by CIM ResourceType; VMware's ``vmw:Config`` and
``vmw:ExtraConfig`` elements add firmware, secure boot, hot-add and passthrough facts.
An OVA's descriptor is read from the tar without extracting the disks.
"""

from __future__ import annotations

import re
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from core.confine import confined
from core.errors import InputError, NotFoundError
from core.inventory import (
    VM,
    CdRom,
    Controller,
    ControllerKind,
    Cpu,
    Disk,
    Firmware,
    Inventory,
    Nic,
    PassthroughDevice,
)
from core.untrusted import DESCRIPTOR_MAX_BYTES, read_capped
from migrator.sources.values import flag, integer, nic_model, scsi_model

OVF_NS = "http://schemas.dmtf.org/ovf/envelope/1"
OVF09_NS = "http://www.vmware.com/schema/ovf/1/envelope"  # OVF 0.9, as ESX 3.x and ovftool 1.x wrote it
VMW_NS = "http://www.vmware.com/schema/ovf"

# CIM ResourceType values (DSP1041 / CIM_ResourceAllocationSettingData)
RT_OTHER, RT_CPU, RT_MEMORY, RT_IDE, RT_SCSI, RT_NIC = 1, 3, 4, 5, 6, 10
RT_CD_DRIVE, RT_DVD_DRIVE, RT_DISK, RT_SATA, RT_USB = 15, 16, 17, 20, 23

_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")
_UNITS = re.compile(r"^\s*byte\s*(?:\*\s*(\d+)\s*\^\s*(\d+))?\s*$", re.IGNORECASE)
_NAMED_UNITS = {
    "kilobytes": 2**10,
    "kb": 2**10,
    "megabytes": 2**20,
    "mb": 2**20,
    "gigabytes": 2**30,
    "gb": 2**30,
    "terabytes": 2**40,
    "tb": 2**40,
    "bytes": 1,
}


XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
# OVF 0.9 (ESX 3.x, ovftool 1.x) spells some RASD elements differently; readers accept every spelling.
_ELEMENT_SPELLINGS: dict[str, tuple[str, ...]] = {
    "InstanceID": ("InstanceID", "InstanceId"),
    "ElementName": ("ElementName", "Caption"),
}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _kind(element: ET.Element) -> str:
    """The element's OVF kind: its local name, or for OVF 0.9's generic ``<Section xsi:type="ovf:X_Type">``
    and ``<Content xsi:type="ovf:VirtualSystem_Type">``, the X its schema type names."""
    name = _local(element.tag)
    if name in ("Section", "Content"):
        schema_type = element.get(XSI_TYPE, "").rsplit(":", 1)[-1]
        if schema_type.endswith("_Type"):
            return schema_type[: -len("_Type")]
    return name


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _kind(child) == name]


def _text(element: ET.Element, name: str) -> str | None:
    spellings = _ELEMENT_SPELLINGS.get(name, (name,))
    for spelling in spellings:
        for child in element:
            if _local(child.tag) == spelling:
                return (child.text or "").strip()
    return None


def _attr(element: ET.Element, name: str) -> str | None:
    """An attribute in the OVF namespace of any version (1.x, or 0.9's VMware one), or unqualified."""
    for namespace in (OVF_NS, OVF09_NS):
        value = element.get(f"{{{namespace}}}{name}")
        if value is not None:
            return value
    return element.get(name)


def units_to_bytes(units: str | None, default: int = 1) -> int:
    """'byte * 2^20' → 1048576; 'MegaBytes' → 1048576; None → default."""
    if not units:
        return default
    match = _UNITS.match(units)
    if match:
        return int(match.group(1)) ** int(match.group(2)) if match.group(1) else 1
    named = _NAMED_UNITS.get(units.strip().lower())
    if named is None:
        raise InputError(f"unknown OVF allocation unit {units!r}")
    return named


def _int(value: str | None, what: str, default: int = 0) -> int:
    return integer(value, default, f"OVF {what} {value!r}")


def _vmw_config(element: ET.Element) -> dict[str, str]:
    """vmw:Config and vmw:ExtraConfig children as {key: value}."""
    found: dict[str, str] = {}
    for child in element:
        if _local(child.tag) in ("Config", "ExtraConfig"):
            key = child.get(f"{{{VMW_NS}}}key")
            if key is not None:
                found[key] = child.get(f"{{{VMW_NS}}}value", "")
    return found


@dataclass
class DescriptorFiles:
    """The descriptor's References and DiskSection, resolved."""

    files: dict[str, str] = field(default_factory=dict)  # file id → href
    file_sizes: dict[str, int] = field(default_factory=dict)
    disks: dict[str, ET.Element] = field(default_factory=dict)  # disk id → Disk element


def parse_descriptor(text: bytes | str, origin: str) -> ET.Element:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as error:
        raise InputError(f"{origin} is not a valid OVF descriptor: {error}") from None
    if _local(root.tag) != "Envelope":
        raise InputError(f"{origin} is not an OVF descriptor (root element is <{_local(root.tag)}>, not <Envelope>)")
    return root


def _files(root: ET.Element) -> DescriptorFiles:
    found = DescriptorFiles()
    for section in _children(root, "References"):
        for item in _children(section, "File"):
            file_id, href = _attr(item, "id"), _attr(item, "href")
            if file_id and href:
                found.files[file_id] = href
                if _attr(item, "size"):
                    found.file_sizes[file_id] = _int(_attr(item, "size"), "file size")
    for section in _children(root, "DiskSection"):
        for disk in _children(section, "Disk"):
            disk_id = _attr(disk, "diskId")
            if disk_id:
                found.disks[disk_id] = disk
    return found


def _virtual_systems(element: ET.Element, folder: str) -> list[tuple[ET.Element, str]]:
    found: list[tuple[ET.Element, str]] = []
    for child in element:
        name = _kind(child)
        if name == "VirtualSystem":
            found.append((child, folder))
        elif name == "VirtualSystemCollection":
            collection = _text(child, "Name") or _attr(child, "id") or "vApp"
            found.extend(_virtual_systems(child, f"{folder.rstrip('/')}/{collection}"))
    return found


class _Resolver:
    """Turns file ids into paths (OVF directory) or member names (OVA), and knows what exists."""

    def __init__(self, base: Path | None, members: dict[str, int] | None) -> None:
        self.base = base
        self.members = members

    def path(self, href: str) -> str:
        """A file's local path, confined to the descriptor's folder (symlinks resolved); an OVA's member name."""
        if self.members is not None or self.base is None or "://" in href:
            return href
        return str(confined(self.base, href, "OVF file reference (ovf:href)"))

    def size(self, href: str) -> int | None:
        if self.members is not None:
            return self.members.get(href)
        local = Path(self.path(href))
        if local.is_file():
            stat = local.stat()
            return min(stat.st_size, stat.st_blocks * 512) if stat.st_blocks else stat.st_size
        return None


def build_vms(root: ET.Element, resolver: _Resolver, source_kind: str) -> list[VM]:
    files = _files(root)
    systems = _virtual_systems(root, "")
    if not systems:
        raise InputError("the OVF descriptor holds no VirtualSystem")
    return [_vm(system, folder, files, resolver, source_kind) for system, folder in systems]


def _vm(system: ET.Element, folder: str, files: DescriptorFiles, resolver: _Resolver, source_kind: str) -> VM:
    name = _text(system, "Name") or _attr(system, "id") or "vm"
    # A system without hardware (or without a memory item) is still a VM: it is listed, and the
    # invalid-memory rule blocks it, as for every other source that cannot tell the memory size.
    hardware = next(iter(_children(system, "VirtualHardwareSection")), None)
    if hardware is None:
        hardware = ET.Element("VirtualHardwareSection")
    config = _vmw_config(hardware)
    vm = VM(name=name, source=source_kind, cpu=Cpu(sockets=1, cores_per_socket=1), memory_mib=0)
    vm.folder = folder or None
    for section in _children(system, "OperatingSystemSection"):
        vm.guest_id = section.get(f"{{{VMW_NS}}}osType") or None
        vm.guest_name = _text(section, "Description") or None
    for section in _children(system, "AnnotationSection"):
        vm.annotation = _text(section, "Annotation") or None
    vm.firmware = Firmware.EFI if config.get("firmware", "").lower() == "efi" else Firmware.BIOS
    vm.secure_boot = flag(config.get("bootOptions.efiSecureBootEnabled"))
    vm.cpu.hot_add = flag(config.get("cpuHotAddEnabled"))
    vm.memory_hot_add = flag(config.get("memoryHotAddEnabled"))
    vm.bios_uuid = config.get("uuid") or None
    if "disk.EnableUUID" in config:
        vm.disk_enable_uuid = flag(config["disk.EnableUUID"])
    if "ctkEnabled" in config:
        vm.cbt_enabled = flag(config["ctkEnabled"])
    vm.vtpm = any(
        _local(child.tag) == "Item" and _text(child, "ResourceSubType") == "vmware.vtpm" for child in hardware
    )
    vm.extra_config = {k: v for k, v in config.items() if k.startswith(("disk.", "guestinfo.", "bios.", "migrator."))}
    for system_el in _children(hardware, "System"):
        vm.extra_config.setdefault("ovf.virtualSystemType", _text(system_el, "VirtualSystemType") or "")

    items = [child for child in hardware if _local(child.tag) in ("Item", "StorageItem", "EthernetPortItem")]
    controllers: dict[str, Controller] = {}
    counts: dict[ControllerKind, int] = {}
    # controllers first: disks and CD-ROMs refer to them by InstanceID
    for item in items:
        kind_model = _controller_kind(item)
        if kind_model is None:
            continue
        kind, model = kind_model
        bus = _int(_text(item, "Address") or _text(item, "BusNumber"), "controller address", counts.get(kind, 0))
        counts[kind] = counts.get(kind, 0) + 1
        controller = Controller(kind, bus, model)
        controllers[_text(item, "InstanceID") or ""] = controller
        vm.controllers.append(controller)
    vcpus = 1
    for item in items:
        resource = _int(_text(item, "ResourceType"), "ResourceType", -1)
        subtype = (_text(item, "ResourceSubType") or "").strip()
        item_config = _vmw_config(item)
        if resource == RT_CPU:
            vcpus = max(1, _int(_text(item, "VirtualQuantity"), "CPU count", 1))
            cores_text = next((c.text for c in item if _local(c.tag) == "CoresPerSocket"), None)
            cores = max(1, _int((cores_text or "").strip(), "CoresPerSocket", 1))
            if vcpus % cores:
                cores = 1
            vm.cpu.sockets, vm.cpu.cores_per_socket = vcpus // cores, cores
        elif resource == RT_MEMORY:
            quantity = _int(_text(item, "VirtualQuantity"), "memory size")
            vm.memory_mib = quantity * units_to_bytes(_text(item, "AllocationUnits"), 2**20) // 2**20
        elif resource == RT_DISK:
            vm.disks.append(_disk(item, len(vm.disks) + 1, controllers, files, resolver, name))
        elif resource in (RT_CD_DRIVE, RT_DVD_DRIVE):
            controller = controllers.get(_text(item, "Parent") or "")
            if controller is None:
                continue
            host = _text(item, "HostResource") or ""
            iso = None
            if host.startswith("ovf:/file/"):
                href = files.files.get(host[len("ovf:/file/") :])
                iso = resolver.path(href) if href else None
            vm.cdroms.append(
                CdRom(
                    label=_text(item, "ElementName") or f"CD/DVD drive {len(vm.cdroms) + 1}",
                    controller=controller,
                    unit_number=_int(_text(item, "AddressOnParent"), "AddressOnParent"),
                    iso_file=iso,
                    start_connected=flag(_text(item, "AutomaticAllocation")),
                )
            )
        elif resource == RT_NIC:
            vm.nics.append(_nic(item, item_config, len(vm.nics) + 1))
        elif resource == RT_USB:
            low = subtype.lower()
            vm.usb_controllers.append("usb_xhci" if "xhci" in low else "usb.ehci" if "ehci" in low else "usb")
        elif (resource == RT_OTHER and "passthrough" in subtype.lower()) or "backing.vgpu" in item_config:
            label = _text(item, "ElementName") or f"PCI device {len(vm.passthrough)}"
            vgpu = item_config.get("backing.vgpu")
            detail = vgpu or item_config.get("backing.allowedDevice") or subtype or None
            vm.passthrough.append(PassthroughDevice(label, "vgpu" if vgpu else "pci", detail))
    return vm


def _controller_kind(item: ET.Element) -> tuple[ControllerKind, str] | None:
    resource = _int(_text(item, "ResourceType"), "ResourceType", -1)
    subtype = (_text(item, "ResourceSubType") or "").strip().lower()
    if resource == RT_IDE:
        return ControllerKind.IDE, "ide"
    if resource == RT_SCSI:
        return ControllerKind.SCSI, scsi_model(subtype or "lsilogic")
    if resource == RT_SATA:
        if "nvme" in subtype:
            return ControllerKind.NVME, "nvme"
        return ControllerKind.SATA, "ahci"
    if resource == RT_OTHER and "nvme" in subtype:
        return ControllerKind.NVME, "nvme"
    return None


def _disk(
    item: ET.Element,
    number: int,
    controllers: dict[str, Controller],
    files: DescriptorFiles,
    resolver: _Resolver,
    vm_name: str,
) -> Disk:
    parent = _text(item, "Parent") or ""
    controller = controllers.get(parent)
    if controller is None:
        raise InputError(f"OVF VM {vm_name!r}: disk item {number} refers to an unknown controller {parent!r}")
    host = _text(item, "HostResource") or ""
    capacity = 0
    allocated: int | None = None
    href: str | None = None
    format_hint: str | None = None
    if host.startswith(("ovf:/disk/", "/disk/")):
        disk_id = host.rsplit("/", 1)[-1]
        element = files.disks.get(disk_id)
        if element is None:
            raise InputError(f"OVF VM {vm_name!r}: disk {host!r} is not in the DiskSection")
        units = units_to_bytes(_attr(element, "capacityAllocationUnits"), 1)
        capacity = _int(_attr(element, "capacity"), "disk capacity") * units
        populated = _attr(element, "populatedSize")
        file_ref = _attr(element, "fileRef")
        href = files.files.get(file_ref) if file_ref else None
        format_hint = _attr(element, "format")
        if populated not in (None, "", "0"):
            allocated = _int(populated, "populatedSize")
    elif host.startswith("ovf:/file/"):
        href = files.files.get(host[len("ovf:/file/") :])
    if href is not None:
        stored = resolver.size(href)
        if allocated is None and stored is not None:
            allocated = stored
    return Disk(
        label=_text(item, "ElementName") or f"Hard disk {number}",
        capacity_bytes=capacity,
        controller=controller,
        unit_number=_int(_text(item, "AddressOnParent"), "AddressOnParent"),
        backing_file=resolver.path(href) if href else None,
        datastore=None,
        allocated_bytes=allocated,
        format_hint=format_hint,
        thin=True if format_hint and "streamOptimized" in format_hint else None,
    )


def _nic(item: ET.Element, config: dict[str, str], number: int) -> Nic:
    subtype = (_text(item, "ResourceSubType") or "").strip().lower()
    mac = _text(item, "Address") or config.get("macAddress") or config.get("ethernet.address")
    if mac and not _MAC.match(mac):
        mac = None
    network = _text(item, "Connection") or None
    if network and network.lower() == "none":
        network = None
    connected = _text(item, "AutomaticAllocation")
    return Nic(
        label=_text(item, "ElementName") or f"Network adapter {number}",
        model=nic_model(subtype or "e1000"),
        mac=mac.lower().replace("-", ":") if mac else None,
        network=network,
        connected=connected is None or flag(connected),
        start_connected=connected is None or flag(connected),
    )


class OvfSource:
    """An OVF descriptor on disk; its disk files are looked up beside it."""

    certificate_thumbprint: str | None = None  # a file: no TLS

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"ovf:{path}"

    def inventory(self) -> Inventory:
        data = read_capped(self.path, "OVF descriptor", DESCRIPTOR_MAX_BYTES)
        root = parse_descriptor(data, str(self.path))
        vms = build_vms(root, _Resolver(self.path.parent, None), "ovf")
        return Inventory(source_url=self.url, vms=vms, about={"kind": "ovf"})

    def close(self) -> None:
        pass


class OvaSource:
    """An OVA tar: the descriptor is its first member; disks are read later, never extracted here."""

    certificate_thumbprint: str | None = None  # a file: no TLS

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"ova:{path}"

    def inventory(self) -> Inventory:
        members, first, data = read_ova_descriptor(self.path)
        by_name = {m.name.removeprefix("./"): m for m in members}
        sizes = {name: m.size for name, m in by_name.items() if m.isfile()}
        root = parse_descriptor(data, f"{self.path}:{first.name}")
        for href in _files(root).files.values():
            if "://" in href:
                continue
            check_member_name(self.path, href)
            member = by_name.get(href)
            if member is None:
                raise InputError(f"{self.path}: member {href!r} named by the descriptor is missing from the OVA")
            if not member.isfile():
                raise InputError(f"{self.path}: member {href!r} is a link or special file, not a disk: refused")
        vms = build_vms(root, _Resolver(None, sizes), "ovf")
        for vm in vms:
            vm.extra_config["ova.path"] = str(self.path)
        return Inventory(source_url=self.url, vms=vms, about={"kind": "ova", "descriptor": first.name})

    def close(self) -> None:
        pass


def check_member_name(ova: Path, name: str) -> None:
    """An OVA member a descriptor names is a plain relative name: no absolute path, no '..'."""
    parts = Path(name).parts
    if not name or name.startswith("/") or ".." in parts:
        raise InputError(f"{ova}: member name {name!r} points outside the OVA: refused")


def read_ova_descriptor(path: Path) -> tuple[list[tarfile.TarInfo], tarfile.TarInfo, bytes]:
    """The OVA's members, its descriptor member (the first) and the descriptor's bytes."""
    if path.is_file() and not tarfile.is_tarfile(path):
        raise InputError(f"{path} is not a valid OVA: not a tar archive")
    try:
        with tarfile.open(path, "r:*") as tar:
            members = tar.getmembers()
            if not members:
                raise InputError(f"{path} is an empty tar, not an OVA")
            first = members[0]
            if not first.name.lower().endswith(".ovf") or not first.isfile():
                raise InputError(f"{path}: the first member {first.name!r} is not an .ovf descriptor")
            if first.size > DESCRIPTOR_MAX_BYTES:
                raise InputError(
                    f"{path}: the descriptor {first.name!r} is larger than {DESCRIPTOR_MAX_BYTES >> 20} MiB"
                )
            handle = tar.extractfile(first)
            data = handle.read() if handle else b""
    except tarfile.TarError as error:
        raise InputError(f"{path} is not a valid OVA (tar) file: {_one_line(error)}") from None
    except (OSError, EOFError) as error:
        raise InputError(f"cannot read {path}: {getattr(error, 'strerror', None) or _one_line(error)}") from None
    return members, first, data


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _existing(location: str, what: str) -> Path:
    path = Path(location).expanduser().resolve()
    if not path.exists():
        raise NotFoundError(f"{what} {location} does not exist")
    return path


def open_ovf(location: str, options: object = None) -> OvfSource:
    return OvfSource(_existing(location, "OVF descriptor"))


def open_ova(location: str, options: object = None) -> OvaSource:
    return OvaSource(_existing(location, "OVA file"))
