"""The RVTools source: an RVTools export (.xlsx) read as an inventory, for planning and reports.

RVTools dumps a vCenter's inventory into one sheet per object kind. We read vInfo (one row per
VM), vDisk, vNetwork, vCD, vSnapshot, vTools, vHost, vCluster and vDatastore, each where
present; only vInfo is required. Column names changed between RVTools versions (3.x wrote
"MB" where 4.x writes "MiB", "OS" where 4.x writes "OS according to the configuration file"),
so every field is looked up under each documented spelling. Values are messy in the wild:
empty cells, "Yes"/"No" and "True"/"False", numbers as strings with units or thousands
separators, and grand-total rows at the bottom of a sheet; they are all read as a person would.

The VMs are vSphere VMs (``source = "vsphere"``), so every planning rule applies as it does to a
live vCenter; but an export holds no disks, so convert and cutover refuse it (INVENTORY_ONLY).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InputError, NotFoundError
from core.inventory import (
    VM,
    CdRom,
    ClusterFacts,
    Controller,
    ControllerKind,
    Cpu,
    Disk,
    DiskMode,
    Firmware,
    Inventory,
    Nic,
    PowerState,
    Sharing,
    Snapshot,
)

MIB = 2**20
MAX_WORKBOOK_BYTES = 512 * MIB  # an export of 50,000 VMs is well under this

# field → the header spellings RVTools versions used, newest first. MB in RVTools 3.x meant MiB.
VINFO = {
    "vm": ("VM", "VM Name", "Name"),
    "power": ("Powerstate", "Power state", "PowerState"),
    "template": ("Template",),
    "cpus": ("CPUs", "Num CPU", "# CPU", "vCPUs"),
    "memory_mib": ("Memory", "Memory MiB", "Memory MB", "Memory (MB)"),
    "provisioned_mib": ("Provisioned MiB", "Provisioned MB", "Provisioned (MB)"),
    "in_use_mib": ("In Use MiB", "In Use MB", "In Use (MB)"),
    "datacenter": ("Datacenter",),
    "cluster": ("Cluster",),
    "host": ("Host",),
    "folder": ("Folder",),
    "os_config": ("OS according to the configuration file", "OS", "Guest OS"),
    "os_tools": ("OS according to the VMware Tools", "OS according to the VMware Tools "),
    "dns": ("DNS Name", "DNS name"),
    "ip": ("Primary IP Address", "Primary IP", "IP Address"),
    "moref": ("VM ID", "VMRef", "MoRef"),
    "instance_uuid": ("VM UUID", "UUID"),
    "bios_uuid": ("SMBIOS UUID", "BIOS UUID"),
    "firmware": ("Firmware",),
    "secure_boot": ("EFI Secure boot", "Secure Boot"),
    "cbt": ("CBT", "Change Block Tracking", "ChangeTrackingEnabled"),
    "enable_uuid": ("EnableUUID", "disk.EnableUUID"),
    "consolidation": ("Consolidation Needed", "Consolidation needed"),
    "ft_state": ("FT State",),
    "annotation": ("Annotation", "Notes"),
    "hw_version": ("HW version", "HW Version", "Version"),
}
VDISK = {
    "vm": VINFO["vm"],
    "label": ("Disk", "Label", "Disk Label"),
    "capacity_mib": ("Capacity MiB", "Capacity MB", "Capacity (MB)"),
    "path": ("Path", "Disk Path", "Filename"),
    "thin": ("Thin",),
    "eager": ("Eagerly Scrub", "Eager Zeroed"),
    "mode": ("Disk Mode", "Mode"),
    "sharing": ("Sharing mode", "Sharing Mode"),
    "raw": ("Raw", "RDM"),
    "raw_mode": ("Raw Comp. Mode", "Raw Compatibility Mode"),
    "controller": ("Controller",),
    "unit": ("Unit #", "SCSI Unit #", "Unit"),
    "uuid": ("Disk UUID",),
    "shared_bus": ("Shared Bus",),
}
VNETWORK = {
    "vm": VINFO["vm"],
    "label": ("NIC label", "NIC Label", "Label"),
    "adapter": ("Adapter", "Type", "Adapter Type"),
    "network": ("Network", "Portgroup", "Port Group"),
    "connected": ("Connected",),
    "starts_connected": ("Starts Connected", "Start Connected"),
    "mac": ("Mac Address", "MAC Address", "MAC"),
    "ipv4": ("IPv4 Address", "IP Address", "IPv4"),
    "direct_path": ("Direct Path IO",),
}
VCD = {
    "vm": VINFO["vm"],
    "node": ("Device Node", "Label"),
    "connected": ("Connected",),
    "starts_connected": ("Starts Connected",),
    "device_type": ("Device Type", "Type"),
}
VSNAPSHOT = {
    "vm": VINFO["vm"],
    "name": ("Name", "Snapshot Name", "Snapshot"),
    "created": ("Date / time", "Date/time", "Created", "Date"),
}
VTOOLS = {"vm": VINFO["vm"], "tools": ("Tools", "Tools Status", "Status")}
VHOST = {"host": ("Host", "Name"), "cluster": ("Cluster",)}
VCLUSTER = {
    "name": ("Name", "Cluster"),
    "drs": ("DRS enabled", "DRS Enabled"),
    "drs_behavior": ("DRS default VM behavior", "DRS Behavior", "DRS default behavior"),
    "dpm": ("DPM enabled", "DPM Enabled"),
}
VDATASTORE = {"name": ("Name", "Datastore"), "capacity_mib": ("Capacity MiB", "Capacity MB")}

_TRUE = {"true", "yes", "y", "1", "on", "enabled", "x"}
_FALSE = {"false", "no", "n", "0", "off", "disabled", ""}
_TOTAL_ROW = re.compile(r"^\s*(grand\s+)?totals?\b|^\s*sum\b", re.IGNORECASE)
_NUMBER = re.compile(r"^\s*(-?[\d.,\s]*\d)\s*([kmgt]i?b)?\s*$", re.IGNORECASE)
_UNIT_MIB = {"kb": 1 / 1024, "kib": 1 / 1024, "mb": 1, "mib": 1, "gb": 1024, "gib": 1024, "tb": 1024**2, "tib": 1024**2}
_DATASTORE = re.compile(r"^\s*\[([^\]]+)\]")
_NIC_MODELS = {
    "vmxnet3": "vmxnet3",
    "vmxnet2": "vmxnet2",
    "vmxnet": "vmxnet",
    "e1000e": "e1000e",
    "e1000": "e1000",
    "pcnet32": "pcnet32",
    "flexible": "pcnet32",
    "sriov": "sriov",
    "sr-iov": "sriov",
}
_CONTROLLERS = (
    (re.compile(r"nvme", re.I), ControllerKind.NVME, "nvme"),
    (re.compile(r"sata|ahci", re.I), ControllerKind.SATA, "ahci"),
    (re.compile(r"ide", re.I), ControllerKind.IDE, "ide"),
    (re.compile(r"scsi|sas|paravirtual|lsi|buslogic", re.I), ControllerKind.SCSI, "unknown"),
)
_SCSI_MODELS = (("paravirtual", "pvscsi"), ("pvscsi", "pvscsi"), ("sas", "lsisas1068"), ("buslogic", "buslogic"))
_POWER = {"poweredon": PowerState.ON, "poweredoff": PowerState.OFF, "suspended": PowerState.SUSPENDED}


def _norm(header: Any) -> str:
    return re.sub(r"[^a-z0-9#]", "", str(header or "").lower())


def as_bool(value: Any) -> bool | None:
    """'Yes'/'No', 'True'/'False', 1/0, booleans; None for an empty or unknown cell."""
    if isinstance(value, bool):
        return value
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE - {""}:
        return False
    return None


def as_mib(value: Any) -> float | None:
    """A size in MiB from 4096, 4096.0, '4,096', '4 096 MiB', '4 GiB'; None when empty or not a size."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    match = _NUMBER.match(str(value))
    if not match:
        return None
    digits = re.sub(r"[\s,]", "", match.group(1))
    try:
        number = float(digits)
    except ValueError:
        return None
    return number * _UNIT_MIB[(match.group(2) or "mib").lower()]


def as_int(value: Any) -> int | None:
    mib = as_mib(value)
    return int(mib) if mib is not None else None


def as_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


@dataclass
class Sheet:
    """One worksheet: its rows as {field: cell}, by the first spelling of each field found in the header."""

    name: str
    rows: list[dict[str, Any]]


def _read_sheet(worksheet: Any, fields: dict[str, tuple[str, ...]], key: str) -> Sheet:
    rows = worksheet.iter_rows(values_only=True)
    columns: dict[str, int] = {}
    for header in rows:
        normalised = [_norm(cell) for cell in header]
        for field, spellings in fields.items():
            for spelling in spellings:
                if _norm(spelling) in normalised:
                    columns[field] = normalised.index(_norm(spelling))
                    break
        if key in columns:
            break
        columns = {}  # a title or blank row above the header: keep looking
    if key not in columns:
        raise InputError(f"RVTools sheet {worksheet.title!r} has no {fields[key][0]!r} column")
    found: list[dict[str, Any]] = []
    for values in rows:
        row = {field: values[index] if index < len(values) else None for field, index in columns.items()}
        name = as_text(row[key])
        if name is None or _TOTAL_ROW.match(name):
            continue  # blank rows and the grand-total rows some exports end with
        row[key] = name
        found.append(row)
    return Sheet(worksheet.title, found)


def _by_vm(sheet: Sheet | None) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in sheet.rows if sheet else []:
        grouped.setdefault(row["vm"], []).append(row)
    return grouped


def _controller(text: str | None, number: int, cache: dict[str, Controller]) -> Controller:
    label = text or "SCSI controller 0"
    if label in cache:
        return cache[label]
    kind, model = ControllerKind.SCSI, "unknown"
    for pattern, pattern_kind, pattern_model in _CONTROLLERS:
        if pattern.search(label):
            kind, model = pattern_kind, pattern_model
            break
    if kind is ControllerKind.SCSI:
        model = next((m for word, m in _SCSI_MODELS if word in label.lower()), model)
    bus = re.search(r"(\d+)\s*$", label)
    controller = Controller(kind, int(bus.group(1)) if bus else number, model)
    cache[label] = controller
    return controller


def _disk(row: dict[str, Any], number: int, controllers: dict[str, Controller]) -> Disk:
    path = as_text(row.get("path"))
    datastore = _DATASTORE.match(path) if path else None
    mode_text = (as_text(row.get("mode")) or "persistent").lower().replace(" ", "_")
    mode = next((m for m in DiskMode if m.value.lower() == mode_text), DiskMode.PERSISTENT)
    sharing_text = (as_text(row.get("sharing")) or "").lower()
    capacity = as_mib(row.get("capacity_mib"))
    return Disk(
        label=as_text(row.get("label")) or f"Hard disk {number}",
        capacity_bytes=int((capacity or 0) * MIB),
        controller=_controller(as_text(row.get("controller")), 0, controllers),
        unit_number=as_int(row.get("unit")) or 0,
        backing_file=path,
        datastore=datastore.group(1) if datastore else None,
        thin=as_bool(row.get("thin")),
        eager_zeroed=as_bool(row.get("eager")),
        sharing=Sharing.MULTI_WRITER if "multi" in sharing_text else Sharing.NONE,
        mode=mode,
        rdm=bool(as_bool(row.get("raw"))),
        rdm_compatibility=as_text(row.get("raw_mode")),
        uuid=as_text(row.get("uuid")),
    )


def _nic(row: dict[str, Any], number: int) -> Nic:
    adapter = re.sub(r"[^a-z0-9-]", "", (as_text(row.get("adapter")) or "").lower())
    mac = as_text(row.get("mac"))
    ips = [ip.strip() for ip in re.split(r"[,;\s]+", as_text(row.get("ipv4")) or "") if ip.strip()]
    connected = as_bool(row.get("connected"))
    starts = as_bool(row.get("starts_connected"))
    return Nic(
        label=as_text(row.get("label")) or f"Network adapter {number}",
        model=next((model for word, model in _NIC_MODELS.items() if word in adapter), adapter or "e1000"),
        mac=mac.lower() if mac else None,
        network=as_text(row.get("network")),
        connected=connected is not False,
        start_connected=starts is not False,
        ips=ips,
    )


def _cdrom(row: dict[str, Any], number: int, controllers: dict[str, Controller]) -> CdRom:
    node = as_text(row.get("node")) or ""
    device = as_text(row.get("device_type")) or ""
    bus = re.search(r"(ide|sata)\s*(\d+)\s*:\s*(\d+)", node, re.IGNORECASE)
    label = f"{bus.group(1).upper()} {bus.group(2)}" if bus else "IDE 0"
    iso = re.search(r"\[[^\]]+\]\s*\S.*\.iso", device, re.IGNORECASE)
    return CdRom(
        label=f"CD/DVD drive {number}",
        controller=_controller(label, 0, controllers),
        unit_number=int(bus.group(3)) if bus else 0,
        iso_file=iso.group(0) if iso else None,
        connected=bool(as_bool(row.get("connected"))),
        start_connected=bool(as_bool(row.get("starts_connected"))),
    )


def _split_allocation(disks: list[Disk], in_use_mib: float | None) -> None:
    """vInfo says what a VM stores in all, not per disk: share it by capacity, capped at each disk's size.

    "In Use" also counts swap and snapshot files, so this is an upper estimate; with no figure
    (or zero, which a stale export reports) the allocation stays unknown.
    """
    capacity = sum(d.capacity_bytes for d in disks)
    if not in_use_mib or capacity <= 0:
        return
    in_use = in_use_mib * MIB
    for disk in disks:
        disk.allocated_bytes = min(disk.capacity_bytes, int(in_use * disk.capacity_bytes / capacity))


class RvtoolsSource:
    """An RVTools workbook on disk."""

    certificate_thumbprint: str | None = None  # a file: no TLS

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"rvtools:{path}"

    def _sheets(self) -> dict[str, Sheet | None]:
        import openpyxl  # imported here: only this source needs it
        from openpyxl.utils.exceptions import InvalidFileException

        if self.path.stat().st_size > MAX_WORKBOOK_BYTES:
            raise InputError(f"{self.path} is larger than {MAX_WORKBOOK_BYTES // MIB} MiB: not an RVTools export")
        # Read from an open file, not a path: openpyxl refuses a path by its suffix alone, and an export that
        # was renamed (export.xlsx.bak, a mail client's attachment name) is still a workbook.
        handle = self.path.open("rb")
        try:
            workbook = openpyxl.load_workbook(handle, read_only=True, data_only=True)
        except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as error:
            handle.close()
            raise InputError(f"{self.path} is not an Excel workbook (.xlsx): {error}") from None
        try:
            titles = {title.lower(): title for title in workbook.sheetnames}
            if "vinfo" not in titles:
                raise InputError(f"{self.path} has no vInfo sheet: not an RVTools export")
            kinds = {
                "vinfo": (VINFO, "vm"),
                "vdisk": (VDISK, "vm"),
                "vnetwork": (VNETWORK, "vm"),
                "vcd": (VCD, "vm"),
                "vsnapshot": (VSNAPSHOT, "vm"),
                "vtools": (VTOOLS, "vm"),
                "vhost": (VHOST, "host"),
                "vcluster": (VCLUSTER, "name"),
                "vdatastore": (VDATASTORE, "name"),
            }
            return {
                kind: _read_sheet(workbook[titles[kind]], fields, key) if kind in titles else None
                for kind, (fields, key) in kinds.items()
            }
        finally:
            workbook.close()
            handle.close()

    def inventory(self) -> Inventory:
        sheets = self._sheets()
        info = sheets["vinfo"]
        assert info is not None
        disks, nics, cds = _by_vm(sheets["vdisk"]), _by_vm(sheets["vnetwork"]), _by_vm(sheets["vcd"])
        snapshots, tools = _by_vm(sheets["vsnapshot"]), _by_vm(sheets["vtools"])
        clusters = {row["name"]: row for row in (sheets["vcluster"].rows if sheets["vcluster"] else [])}
        host_cluster = {
            row["host"]: as_text(row.get("cluster")) for row in (sheets["vhost"].rows if sheets["vhost"] else [])
        }
        vms = [
            self._vm(
                row,
                disks.get(row["vm"], []),
                nics.get(row["vm"], []),
                cds.get(row["vm"], []),
                snapshots.get(row["vm"], []),
                tools.get(row["vm"], []),
                clusters,
                host_cluster,
            )
            for row in info.rows
        ]
        about = {"kind": "rvtools", "sheets": ",".join(k for k, v in sheets.items() if v is not None)}
        return Inventory(source_url=self.url, vms=vms, about=about)

    def _vm(
        self,
        row: dict[str, Any],
        disk_rows: list[dict[str, Any]],
        nic_rows: list[dict[str, Any]],
        cd_rows: list[dict[str, Any]],
        snapshot_rows: list[dict[str, Any]],
        tool_rows: list[dict[str, Any]],
        clusters: dict[str, dict[str, Any]],
        host_cluster: dict[str, str | None],
    ) -> VM:
        cpus = max(1, as_int(row.get("cpus")) or 1)
        memory = as_int(row.get("memory_mib")) or 0
        vm = VM(name=row["vm"], source="vsphere", cpu=Cpu(sockets=cpus, cores_per_socket=1), memory_mib=memory)
        vm.power_state = _POWER.get(_norm(row.get("power")), PowerState.UNKNOWN)
        vm.is_template = bool(as_bool(row.get("template")))
        vm.datacenter = as_text(row.get("datacenter"))
        vm.host = as_text(row.get("host"))
        cluster_name = as_text(row.get("cluster")) or host_cluster.get(vm.host or "")
        if cluster_name:
            facts = clusters.get(cluster_name, {})
            behaviour = as_text(facts.get("drs_behavior"))
            vm.cluster = ClusterFacts(
                name=cluster_name,
                drs_enabled=as_bool(facts.get("drs")),
                drs_behavior=behaviour[0].lower() + behaviour[1:] if behaviour else None,
                dpm_enabled=as_bool(facts.get("dpm")),
            )
        folder = as_text(row.get("folder"))
        vm.folder = folder if folder is None or folder.startswith("/") else f"/{folder}"
        vm.guest_name = as_text(row.get("os_config")) or as_text(row.get("os_tools"))
        vm.hostname = as_text(row.get("dns"))
        ip = as_text(row.get("ip"))
        vm.ip_addresses = [ip] if ip else []
        vm.moref = as_text(row.get("moref"))
        vm.instance_uuid = as_text(row.get("instance_uuid"))
        vm.bios_uuid = as_text(row.get("bios_uuid"))
        vm.firmware = Firmware.EFI if (as_text(row.get("firmware")) or "").lower() == "efi" else Firmware.BIOS
        vm.secure_boot = bool(as_bool(row.get("secure_boot")))
        vm.cbt_enabled = as_bool(row.get("cbt"))
        vm.disk_enable_uuid = as_bool(row.get("enable_uuid"))
        vm.consolidation_needed = bool(as_bool(row.get("consolidation")))
        ft_state = (as_text(row.get("ft_state")) or "notConfigured").lower()
        vm.fault_tolerance = ft_state not in ("notconfigured", "disabled", "not configured")
        vm.annotation = as_text(row.get("annotation"))
        if as_text(row.get("hw_version")):
            vm.extra_config["virtualHW.version"] = str(row["hw_version"]).strip()
        controllers: dict[str, Controller] = {}
        vm.disks = [_disk(d, i + 1, controllers) for i, d in enumerate(disk_rows)]
        _split_allocation(vm.disks, as_mib(row.get("in_use_mib")))
        vm.nics = [_nic(n, i + 1) for i, n in enumerate(nic_rows)]
        vm.cdroms = [_cdrom(c, i + 1, controllers) for i, c in enumerate(cd_rows)]
        vm.controllers = list(controllers.values())
        vm.snapshots = [
            Snapshot(name=as_text(s.get("name")) or "snapshot", created=as_text(s.get("created")))
            for s in snapshot_rows
        ]
        if tool_rows:
            vm.tools_status = as_text(tool_rows[0].get("tools"))
        return vm

    def close(self) -> None:
        pass


def open_rvtools(location: str, options: object = None) -> RvtoolsSource:
    path = Path(location).expanduser()
    if not path.exists():
        raise NotFoundError(f"RVTools export {location} does not exist")
    if path.is_dir():
        raise InputError(f"{location} is a directory, not an RVTools export (.xlsx)")
    return RvtoolsSource(path.resolve())
