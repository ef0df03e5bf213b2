"""The VMX source: one VMware ``.vmx`` file (standalone ESXi, Workstation, Fusion).

A .vmx is ``key = "value"`` lines; keys are case-insensitive and values escape bytes as
``|XX`` (hex). Disks are read from the ``.vmdk`` descriptors beside the .vmx (capacity from
the extent lines, allocated bytes from the extent files), snapshots from the ``.vmsd``.
Nothing here writes to the source files.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from pathlib import Path

from converters.disks import inspect_local
from core import inventory
from core.confine import confined, vmfs_datastore
from core.errors import DiskError, InputError, NotFoundError
from core.inventory import (
    VM,
    CdRom,
    Controller,
    ControllerKind,
    Disk,
    DiskMode,
    Firmware,
    Inventory,
    Nic,
    PassthroughDevice,
    PowerState,
    Sharing,
    Snapshot,
)
from core.untrusted import DESCRIPTOR_MAX_BYTES, read_capped
from migrator.sources import SourceOptions
from migrator.sources.values import flag, integer, nic_model, optional_flag, scsi_model

_LINE = re.compile(r'^\s*([^=\s"]+)\s*=\s*(?:"(.*)"|([^\s"]*))\s*$')
_ESCAPE = re.compile(r"\|([0-9A-Fa-f]{2})")
_DEVICE = re.compile(r"^(scsi|sata|ide|nvme)(\d+):(\d+)\.present$")
_ETHERNET = re.compile(r"^ethernet(\d+)\.present$")
_PASSTHRU = re.compile(r"^pcipassthru(\d+)\.present$")
_CONTROLLER = re.compile(r"^(scsi|sata|nvme)(\d+)\.present$")
_DELTA_DISK = re.compile(r"-\d{6}\.vmdk$", re.IGNORECASE)
_CDROM_TYPES = {"cdrom-image", "atapi-cdrom", "cdrom-raw"}
_SHARED_BUS = {"virtual": "virtualSharing", "physical": "physicalSharing", "none": "noSharing"}
# extra-config keys worth carrying into the plan (the rest of a .vmx is hardware detail)
_KEPT_KEYS = ("disk.enableuuid", "guestinfo.", "numa.", "bios.", "migrator.", "isolation.", "smbios.")


def parse_vmx(text: str, origin: str = "vmx") -> dict[str, str]:
    """Parse .vmx / .vmsd text into {lower-case key: unescaped value}. Raises InputError on a malformed line."""
    entries: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise InputError(f"{origin}: line {number} is not 'key = \"value\"': {line[:60]!r}")
        value = match.group(2) if match.group(2) is not None else match.group(3)
        entries[match.group(1).lower()] = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
    return entries


_ENCODING = re.compile(rb'^\s*\.encoding\s*=\s*"([^"]+)"', re.IGNORECASE | re.MULTILINE)


def _read_text(path: Path, what: str) -> str:
    """The file's text: UTF-8, or the ``.encoding`` it declares; anything else is refused, not guessed."""
    data = read_capped(path, what, DESCRIPTOR_MAX_BYTES)
    if b"\x00" in data:
        raise InputError(f"{path} is not a text {what} (binary data)")
    declared = _ENCODING.search(data)
    encoding = declared.group(1).decode("ascii", "replace").strip() if declared else "UTF-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise InputError(f"{path}: unknown .encoding {encoding!r}") from None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise InputError(
            f"{path}: line {line} is not valid {encoding} (byte {data[error.start]:#04x}); "
            f"re-save the {what} as UTF-8 or give its .encoding"
        ) from None


def _int(value: str | None, default: int, key: str, origin: str) -> int:
    return integer(value, default, f"{origin}: {key} = {value!r}")


def vmx_uuid(value: str | None) -> str | None:
    """'56 4d 96 af e6 46 bd 86-5c 4d 65 4e 77 36 ef 31' → '564d96af-e646-bd86-5c4d-654e7736ef31'."""
    if not value:
        return None
    digits = re.sub(r"[^0-9a-fA-F]", "", value).lower()
    if len(digits) != 32:
        return None
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


# --- VMDK descriptors -------------------------------------------------------------------


class VmdkInfo:
    """What a .vmdk descriptor says: capacity, bytes stored, RDM kind, CBT, UUID; and, when the disk
    engine would refuse it, why (``problem``, the very line convert would print)."""

    def __init__(self) -> None:
        self.capacity_bytes = 0
        self.allocated_bytes: int | None = None
        self.create_type = ""
        self.extents: list[tuple[str, int, str]] = []  # (access, sectors, file)
        self.uuid: str | None = None
        self.cbt: bool | None = None
        self.parent: str | None = None
        self.problem: str | None = None


def read_vmdk(path: Path) -> VmdkInfo:
    """Read a VMDK with the disk engine's own parser (text descriptor, or embedded in a sparse file).

    Extent and parent files must lie in the descriptor's folder (symlinks resolved): InputError
    otherwise; any other reason convert would refuse the disk is kept in ``problem``."""
    try:
        facts = inspect_local(path)
    except DiskError as error:
        raise InputError(error.message) from None
    info = VmdkInfo()
    info.capacity_bytes = facts.virtual_size
    info.create_type = facts.create_type or ""
    info.extents = [(e.access, e.sectors, e.filename or "") for e in facts.extents]
    info.uuid = facts.values.get("ddb.uuid")
    info.cbt = True if "changeTrackPath" in facts.values else None
    info.parent = facts.parent
    info.problem = facts.problem
    # allocated: the blocks the data files really hold on disk
    files = facts.data_files
    if files and all(f.is_file() for f in files):
        info.allocated_bytes = sum(min(f.stat().st_blocks * 512, f.stat().st_size) for f in files)
    return info


# --- the VM -----------------------------------------------------------------------------


def _datastore_of(path: str) -> str | None:
    """'/vmfs/volumes/<datastore>/dir/x.vmdk' → '<datastore>'; a plain local path has none."""
    found = vmfs_datastore(path)
    return found[0] if found else None


def _controllers(entries: dict[str, str]) -> dict[tuple[str, int], Controller]:
    found: dict[tuple[str, int], Controller] = {}
    for key, value in entries.items():
        match = _CONTROLLER.match(key)
        if not match or not flag(value):
            continue
        kind, bus = match.group(1), int(match.group(2))
        if kind == "scsi":
            dev = entries.get(f"scsi{bus}.virtualdev", "lsilogic").lower()
            model = scsi_model(dev)
            shared = entries.get(f"scsi{bus}.sharedbus")
            found[(kind, bus)] = Controller(
                ControllerKind.SCSI, bus, model, shared_bus=_SHARED_BUS.get((shared or "").lower())
            )
        elif kind == "sata":
            found[(kind, bus)] = Controller(ControllerKind.SATA, bus, "ahci")
        else:
            found[(kind, bus)] = Controller(ControllerKind.NVME, bus, "nvme")
    return found


def _disk_mode(value: str | None) -> DiskMode:
    normalized = (value or "persistent").strip().lower().replace("-", "_")
    try:
        return DiskMode(normalized)
    except ValueError:
        return DiskMode.PERSISTENT


def build_vm(entries: dict[str, str], vmx_path: Path, datastores: Mapping[str, Path] | None = None) -> VM:
    """The VM a .vmx describes. Files it names must lie in its folder, or in a mapped datastore's."""
    origin = str(vmx_path)
    folder = vmx_path.parent
    name = entries.get("displayname") or vmx_path.stem
    vcpus = max(1, _int(entries.get("numvcpus"), 1, "numvcpus", origin))
    cores = max(1, _int(entries.get("cpuid.corespersocket"), 1, "cpuid.coresPerSocket", origin))
    if vcpus % cores:
        cores = 1
    affinity_raw = (entries.get("sched.cpu.affinity") or "all").strip().lower()
    numa_raw = (entries.get("numa.nodeaffinity") or "").strip()
    cpu = inventory.Cpu(
        sockets=vcpus // cores,
        cores_per_socket=cores,
        hot_add=flag(entries.get("vcpu.hotadd")),
        affinity=[] if affinity_raw in ("", "all") else _int_list(affinity_raw),
        numa_affinity=_int_list(numa_raw) if numa_raw else [],
    )
    memory = _int(entries.get("memsize"), 0, "memsize", origin)
    if memory <= 0:
        raise InputError(f"{origin}: no memsize: not a virtual machine configuration")
    vm = VM(
        name=name,
        source="vmx",
        cpu=cpu,
        memory_mib=memory,
        firmware=Firmware.EFI if entries.get("firmware", "").lower() == "efi" else Firmware.BIOS,
        secure_boot=flag(entries.get("uefi.secureboot.enabled")),
        bios_uuid=vmx_uuid(entries.get("uuid.bios")),
        instance_uuid=vmx_uuid(entries.get("vc.uuid")),
        guest_id=entries.get("guestos") or None,
        vtpm=flag(entries.get("vtpm.present")),
        cbt_enabled=optional_flag(entries.get("ctkenabled")),
        memory_hot_add=flag(entries.get("mem.hotadd")),
        encrypted=bool(entries.get("encryption.keysafe") or entries.get("encryption.data")),
        disk_enable_uuid=optional_flag(entries.get("disk.enableuuid")),
        annotation=entries.get("annotation") or None,
        hostname=entries.get("guestinfo.hostname") or None,
        fault_tolerance=any(k.startswith("ft.") and flag(v) for k, v in entries.items() if k.endswith("enabled")),
        power_state=PowerState.SUSPENDED if entries.get("checkpoint.vmstate") else PowerState.UNKNOWN,
        extra_config={k: v for k, v in entries.items() if k.startswith(_KEPT_KEYS)},
    )
    vm.extra_config["vmx.path"] = str(vmx_path)

    controllers = _controllers(entries)
    devices: list[tuple[str, int, int]] = []
    for key, value in entries.items():
        match = _DEVICE.match(key)
        if match and flag(value):
            devices.append((match.group(1), int(match.group(2)), int(match.group(3))))
    order = {"scsi": 0, "sata": 1, "nvme": 2, "ide": 3}
    devices.sort(key=lambda d: (order[d[0]], d[1], d[2]))
    disk_number = cd_number = 0
    for kind, bus, unit in devices:
        prefix = f"{kind}{bus}:{unit}"
        controller = controllers.get((kind, bus))
        if controller is None:
            if kind != "ide":  # IDE buses always exist; the others must be present
                continue
            controller = controllers[(kind, bus)] = Controller(ControllerKind.IDE, bus, "ide")
        device_type = (entries.get(f"{prefix}.devicetype") or "").lower()
        file_name = entries.get(f"{prefix}.filename") or ""
        if device_type in _CDROM_TYPES or (not device_type and file_name.lower().endswith(".iso")):
            cd_number += 1
            vm.cdroms.append(
                CdRom(
                    label=f"CD/DVD drive {cd_number}",
                    controller=controller,
                    unit_number=unit,
                    iso_file=file_name if device_type == "cdrom-image" and file_name else None,
                    connected=False,
                    start_connected=flag(entries.get(f"{prefix}.startconnected", "TRUE")),
                )
            )
            continue
        if not file_name:
            continue
        disk_number += 1
        vm.disks.append(_disk(entries, prefix, disk_number, controller, unit, folder, file_name, datastores))
    vm.controllers = sorted(controllers.values(), key=lambda c: (order[c.kind.value], c.bus_number))

    nic_indexes = sorted(int(m.group(1)) for k, v in entries.items() if (m := _ETHERNET.match(k)) and flag(v))
    vm.nics = [_nic(entries, index) for index in nic_indexes]
    for key, value in entries.items():
        match = _PASSTHRU.match(key)
        if match and flag(value):
            index = match.group(1)
            vgpu = entries.get(f"pcipassthru{index}.vgpu")
            detail = vgpu or entries.get(f"pcipassthru{index}.deviceid") or entries.get(f"pcipassthru{index}.id")
            vm.passthrough.append(PassthroughDevice(f"PCI device {index}", "vgpu" if vgpu else "pci", detail))
    for key, label in (("usb.present", "usb"), ("ehci.present", "usb.ehci"), ("usb_xhci.present", "usb_xhci")):
        if flag(entries.get(key)):
            vm.usb_controllers.append(label)
    if vm.disks and all(d.cbt_enabled for d in vm.disks) and vm.cbt_enabled is None:
        vm.cbt_enabled = True
    vm.snapshots, vm.consolidation_needed = _snapshots(entries, vmx_path, vm.disks)
    return vm


def _int_list(text: str) -> list[int]:
    return [int(part) for part in re.split(r"[,\s]+", text) if part.isascii() and part.isdigit()]


def _disk(
    entries: dict[str, str],
    prefix: str,
    number: int,
    controller: Controller,
    unit: int,
    folder: Path,
    file_name: str,
    datastores: Mapping[str, Path] | None,
) -> Disk:
    on_datastore = vmfs_datastore(file_name)
    # the file to read: in the VMX's folder or a mapped datastore's, never an absolute path followed
    local = confined(folder, file_name, f"disk {prefix}.fileName", datastores)
    path = Path(file_name) if on_datastore is not None else folder / file_name
    device_type = (entries.get(f"{prefix}.devicetype") or "").lower()
    disk = Disk(
        label=f"Hard disk {number}",
        capacity_bytes=0,
        controller=controller,
        unit_number=unit,
        backing_file=str(path),
        datastore=_datastore_of(str(path)) or _datastore_of(str(folder) + "/"),
        mode=_disk_mode(entries.get(f"{prefix}.mode")),
        sharing=Sharing.MULTI_WRITER
        if (entries.get(f"{prefix}.sharing") or "").lower() in ("multi-writer", "multiwriter")
        else Sharing.NONE,
        cbt_enabled=optional_flag(entries.get(f"{prefix}.ctkenabled")),
        format_hint="vmdk",
        rdm=device_type in ("rawdisk", "scsi-passthru"),
    )
    if local.is_file():
        try:
            info = read_vmdk(local)
        except OSError as error:
            raise InputError(f"cannot read disk {local}: {error.strerror}") from None
        disk.capacity_bytes = info.capacity_bytes
        disk.allocated_bytes = info.allocated_bytes
        disk.uuid = info.uuid
        if info.cbt and disk.cbt_enabled is None:
            disk.cbt_enabled = True
        create_type = info.create_type.lower()
        if create_type in ("vmfsrawdevicemap", "vmfspassthroughrawdevicemap"):
            disk.rdm = True
            disk.rdm_compatibility = "physicalMode" if "passthrough" in create_type else "virtualMode"
        disk.thin = None if not create_type else create_type not in ("vmfs", "monolithicflat", "twogbmaxextentflat")
        if not disk.rdm:  # a mapped LUN is never copied: the rdm-disk rule speaks for it
            disk.descriptor_problem = info.problem
    return disk


def _nic(entries: dict[str, str], index: int) -> Nic:
    prefix = f"ethernet{index}"
    dev = (entries.get(f"{prefix}.virtualdev") or "e1000").lower()
    address_type = (entries.get(f"{prefix}.addresstype") or "generated").lower()
    mac = entries.get(f"{prefix}.address") if address_type == "static" else None
    mac = mac or entries.get(f"{prefix}.generatedaddress") or entries.get(f"{prefix}.address")
    network = entries.get(f"{prefix}.networkname") or entries.get(f"{prefix}.connectiontype") or None
    connected = flag(entries.get(f"{prefix}.startconnected", "TRUE"))
    slot = entries.get(f"{prefix}.pcislotnumber") or ""
    return Nic(
        label=f"Network adapter {index + 1}",
        model=nic_model(dev),
        mac=mac.lower() if mac else None,
        network=network,
        connected=connected,
        start_connected=connected,
        pci_slot=int(slot) if slot.strip().isdigit() and int(slot) > 0 else None,
    )


def _snapshots(entries: dict[str, str], vmx_path: Path, disks: list[Disk]) -> tuple[list[Snapshot], bool]:
    """Snapshots from the .vmsd beside the .vmx; delta disks without snapshots mean consolidation is needed."""
    vmsd_name = entries.get("checkpoint.vmsdfilename") or vmx_path.with_suffix(".vmsd").name
    vmsd = confined(vmx_path.parent, vmsd_name, f"{vmx_path}: snapshot file", None)
    snapshots: list[Snapshot] = []
    if vmsd.is_file():
        data = parse_vmx(_read_text(vmsd, "snapshot file"), str(vmsd))
        count = int(data.get("snapshot.numsnapshots", "0") or 0)
        uids = {}
        for index in range(count):
            uid = data.get(f"snapshot{index}.uid")
            name = data.get(f"snapshot{index}.displayname") or f"snapshot {index}"
            snapshots.append(Snapshot(name=name, created=None))
            uids[uid] = len(snapshots) - 1
        for index in range(count):
            parent = data.get(f"snapshot{index}.parent")
            if parent in uids:
                snapshots[uids[parent]].children += 1
    delta = any(d.backing_file and _DELTA_DISK.search(d.backing_file) for d in disks)
    return snapshots, delta and not snapshots


class VmxSource:
    """One .vmx file as a source of one VM."""

    certificate_thumbprint: str | None = None  # a file: no TLS

    def __init__(self, path: Path, datastores: Mapping[str, Path] | None = None) -> None:
        self.path = path
        self.url = f"vmx:{path}"
        self.datastores = dict(datastores or {})

    def inventory(self) -> Inventory:
        entries = parse_vmx(_read_text(self.path, "VMX file"), str(self.path))
        if not entries:
            raise InputError(f"{self.path} is empty: not a VMX file")
        return Inventory(
            source_url=self.url, vms=[build_vm(entries, self.path, self.datastores)], about={"kind": "vmx"}
        )

    def close(self) -> None:
        pass


def open_vmx(location: str, options: SourceOptions | None = None) -> VmxSource:
    path = Path(location).expanduser().resolve()
    if not path.exists():
        raise NotFoundError(f"VMX file {location} does not exist")
    return VmxSource(path, options.datastores() if options else None)
