"""Pure translation: the PropertyCollector's raw records -> the inventory model.

No I/O here. Values are pyvmomi *data* objects (devices, backings, snapshot trees) read as
plain attributes; ManagedObject references are only ever turned into their moref id and
looked up in the same retrieval's records, so nothing triggers a lazy round trip.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim

from core import inventory
from core.inventory import (
    VM,
    ClusterFacts,
    Controller,
    ControllerKind,
    Disk,
    DiskMode,
    Firmware,
    Nic,
    PassthroughDevice,
    PowerState,
    Sharing,
    Snapshot,
)
from migrator.sources.vsphere.collector import RawObject, ref_id

D = vim.vm.device

# Device class -> NIC model. Order matters: subclasses before their bases.
NIC_MODELS: tuple[tuple[type, str], ...] = (
    (D.VirtualVmxnet3, "vmxnet3"),
    (D.VirtualVmxnet2, "vmxnet2"),
    (D.VirtualVmxnet, "vmxnet"),
    (D.VirtualE1000e, "e1000e"),
    (D.VirtualE1000, "e1000"),
    (D.VirtualPCNet32, "pcnet32"),
    (D.VirtualSriovEthernetCard, "sriov"),
)

# Controller class -> (bus kind, model). Order matters: subclasses before their bases.
CONTROLLER_MODELS: tuple[tuple[type, ControllerKind, str], ...] = (
    (D.ParaVirtualSCSIController, ControllerKind.SCSI, "pvscsi"),
    (D.VirtualLsiLogicSASController, ControllerKind.SCSI, "lsisas1068"),
    (D.VirtualLsiLogicController, ControllerKind.SCSI, "lsilogic"),
    (D.VirtualBusLogicController, ControllerKind.SCSI, "buslogic"),
    (D.VirtualSCSIController, ControllerKind.SCSI, "scsi"),
    (D.VirtualAHCIController, ControllerKind.SATA, "ahci"),
    (D.VirtualSATAController, ControllerKind.SATA, "sata"),
    (D.VirtualNVMEController, ControllerKind.NVME, "nvme"),
    (D.VirtualIDEController, ControllerKind.IDE, "ide"),
)

DISK_MODES = {mode.value: mode for mode in DiskMode}
POWER_STATES = {state.value: state for state in PowerState}
TRUE_WORDS = {"true", "1", "yes", "on"}


@dataclass
class Estate:
    """Lookup tables over one retrieval: every reference a VM carries resolves here."""

    names: dict[str, str] = field(default_factory=dict)  # moid -> name
    parents: dict[str, str] = field(default_factory=dict)  # moid -> parent moid
    types: dict[str, str] = field(default_factory=dict)  # moid -> wsdl type
    portgroups: dict[str, str] = field(default_factory=dict)  # DV port group key -> name
    clusters: dict[str, Any] = field(default_factory=dict)  # cluster moid -> configurationEx
    vms: list[RawObject] = field(default_factory=list)

    @classmethod
    def from_objects(cls, objects: Iterable[RawObject]) -> Estate:
        estate = cls()
        for obj in objects:
            estate.types[obj.moid] = obj.type
            props = obj.props
            if "name" in props:
                estate.names[obj.moid] = props["name"]
            parent = ref_id(props.get("parent"))
            if parent:
                estate.parents[obj.moid] = parent
            if obj.type == "VirtualMachine":
                estate.vms.append(obj)
            elif obj.type == "DistributedVirtualPortgroup":
                estate.portgroups[props.get("key") or obj.moid] = props.get("name", obj.moid)
            elif obj.type == "ClusterComputeResource":
                estate.clusters[obj.moid] = props.get("configurationEx")
        return estate

    def ancestors(self, moid: str) -> list[str]:
        chain = []
        seen = {moid}
        current = self.parents.get(moid)
        while current and current not in seen:
            chain.append(current)
            seen.add(current)
            current = self.parents.get(current)
        return chain

    def datacenter_of(self, moid: str) -> str | None:
        for ancestor in self.ancestors(moid):
            if self.types.get(ancestor) == "Datacenter":
                return self.names.get(ancestor)
        return None

    def inventory_path(self, moid: str) -> str:
        """``/DC0/vm/prod`` for a folder: its chain up to, not including, the root folder."""
        chain = [moid, *self.ancestors(moid)]
        if chain and chain[-1] not in self.parents:  # the root folder ("Datacenters") has no parent
            chain = chain[:-1] if len(chain) > 1 else chain
        return "/" + "/".join(self.names.get(m, m) for m in reversed(chain))


def translate_estate(estate: Estate, *, datacenter: str | None = None) -> list[VM]:
    """All VMs of the estate (only those in ``datacenter`` when given), sorted by name."""
    affinity = host_affinity(estate)
    vms = []
    for raw in estate.vms:
        vm = translate_vm(raw, estate, affinity)
        if datacenter is None or vm.datacenter == datacenter:
            vms.append(vm)
    vms.sort(key=lambda vm: (vm.name, vm.moref or ""))
    return vms


def translate_vm(raw: RawObject, estate: Estate, host_affinity: set[str] | None = None) -> VM:
    p = raw.props
    get = p.get
    devices: list[Any] = list(get("config.hardware.device") or ())
    extra = {str(o.key): str(o.value) for o in get("config.extraConfig") or () if o.value is not None}
    files = _layout_files(get("layoutEx.file"))
    disk_files = {d.key: d for d in get("layoutEx.disk") or ()}
    vm_cbt = get("config.changeTrackingEnabled")
    host_id = ref_id(get("runtime.host"))
    boot = get("config.bootOptions")

    controllers: dict[int, Controller] = {}
    for device in devices:
        controller = _controller(device)
        if controller is not None:
            controllers[device.key] = controller

    disks: list[Disk] = []
    nics: list[Nic] = []
    cdroms: list[inventory.CdRom] = []
    passthrough: list[PassthroughDevice] = []
    usb: list[str] = []
    vtpm = False
    guest_ips = _guest_ips(get("guest.net"))
    for device in devices:
        if isinstance(device, D.VirtualDisk):
            disks.append(_disk(device, controllers, estate, files, disk_files, extra, vm_cbt))
        elif isinstance(device, D.VirtualEthernetCard):
            nics.append(_nic(device, estate, guest_ips))
        elif isinstance(device, D.VirtualCdrom):
            cdroms.append(_cdrom(device, controllers))
        elif isinstance(device, D.VirtualPCIPassthrough):
            passthrough.append(_pci_passthrough(device))
        elif isinstance(device, D.VirtualUSBXHCIController):
            usb.append("usb_xhci")
        elif isinstance(device, D.VirtualUSBController):
            usb.append("usb")
            if getattr(device, "ehciEnabled", False):
                usb.append("usb.ehci")
        elif isinstance(device, D.VirtualUSB):
            passthrough.append(PassthroughDevice(label=_label(device), kind="usb", detail=_summary(device)))
        elif isinstance(device, D.VirtualTPM):
            vtpm = True

    num_cpu = int(get("config.hardware.numCPU") or 1)
    cores = int(get("config.hardware.numCoresPerSocket") or 1)
    if cores <= 0 or num_cpu % cores:
        cores = 1
    cpu_affinity = get("config.cpuAffinity")
    cpu = inventory.Cpu(
        sockets=max(num_cpu // cores, 1),
        cores_per_socket=cores,
        hot_add=bool(get("config.cpuHotAddEnabled")),
        affinity=[int(n) for n in (cpu_affinity.affinitySet if cpu_affinity else None) or ()],
        numa_affinity=_int_list(extra.get("numa.nodeAffinity")),
    )

    ips: list[str] = []
    for address in [_s(get("guest.ipAddress")), *[ip for nic in nics for ip in nic.ips]]:
        if address and address not in ips:
            ips.append(address)

    enable_uuid = extra.get("disk.EnableUUID")
    cluster_id = estate.parents.get(host_id) if host_id else None
    firmware = Firmware.EFI if (get("config.firmware") or "").lower() == "efi" else Firmware.BIOS
    folder_id = ref_id(get("parent"))
    return VM(
        name=str(get("name") or raw.moid),
        source="vsphere",
        cpu=cpu,
        memory_mib=int(get("config.hardware.memoryMB") or 0),
        firmware=firmware,
        secure_boot=bool(getattr(boot, "efiSecureBootEnabled", False)) if boot is not None else False,
        disks=disks,
        nics=nics,
        cdroms=cdroms,
        controllers=[controllers[key] for key in sorted(controllers)],
        moref=raw.moid,
        instance_uuid=_s(get("config.instanceUuid")),
        bios_uuid=_s(get("config.uuid")),
        folder=estate.inventory_path(folder_id) if folder_id else None,
        datacenter=estate.datacenter_of(raw.moid),
        cluster=_cluster(cluster_id, raw.moid, estate),
        host=estate.names.get(host_id) if host_id else None,
        guest_id=_s(get("config.guestId")),
        guest_name=_s(get("config.guestFullName")),
        power_state=POWER_STATES.get(str(get("runtime.powerState") or ""), PowerState.UNKNOWN),
        tools_status=_s(get("guest.toolsStatus")),
        hostname=_s(get("guest.hostName")) or None,
        ip_addresses=ips,
        vtpm=vtpm,
        cbt_enabled=None if vm_cbt is None else bool(vm_cbt),
        snapshots=_snapshots(get("snapshot")),
        consolidation_needed=bool(get("runtime.consolidationNeeded")),
        memory_hot_add=bool(get("config.memoryHotAddEnabled")),
        fault_tolerance=get("config.ftInfo") is not None,
        host_affinity=raw.moid in (host_affinity or set()),
        encrypted=get("config.keyId") is not None,
        disk_enable_uuid=(enable_uuid.lower() in TRUE_WORDS) if enable_uuid is not None else False,
        passthrough=passthrough,
        usb_controllers=usb,
        is_template=bool(get("config.template")),
        annotation=_s(get("config.annotation")) or None,
        extra_config=extra,
    )


def _s(value: Any) -> str | None:
    """A plain ``str`` (pyvmomi enum and string values are str subclasses YAML cannot dump)."""
    return None if value is None else str(value)


def _label(device: Any) -> str:
    info = device.deviceInfo
    return str(info.label) if info is not None and info.label else f"device-{device.key}"


def _summary(device: Any) -> str | None:
    info = device.deviceInfo
    return str(info.summary) if info is not None and info.summary else None


def _controller(device: Any) -> Controller | None:
    for cls, kind, model in CONTROLLER_MODELS:
        if isinstance(device, cls):
            shared = getattr(device, "sharedBus", None) if kind is ControllerKind.SCSI else None
            return Controller(
                kind=kind, bus_number=int(device.busNumber or 0), model=model, key=device.key, shared_bus=_s(shared)
            )
    return None


def _unknown_controller(key: int | None) -> Controller:
    return Controller(kind=ControllerKind.SCSI, bus_number=-1, model="unknown", key=key)


def _layout_files(files: Any) -> dict[int, int]:
    """File key -> stored bytes; descriptors count as 0 (metadata, not disk data)."""
    return {f.key: 0 if f.type == "diskDescriptor" else int(f.size or 0) for f in files or ()}


def _datastore_of(file_name: str | None) -> str | None:
    if file_name and file_name.startswith("[") and "]" in file_name:
        return file_name[1 : file_name.index("]")]
    return None


def _disk(
    device: Any,
    controllers: dict[int, Controller],
    estate: Estate,
    files: dict[int, int],
    disk_files: dict[int, Any],
    extra: dict[str, str],
    vm_cbt: bool | None,
) -> Disk:
    backing = device.backing
    controller = controllers.get(device.controllerKey) or _unknown_controller(device.controllerKey)
    unit = int(device.unitNumber) if device.unitNumber is not None else -1
    capacity = device.capacityInBytes or (device.capacityInKB or 0) * 1024
    file_name = _s(getattr(backing, "fileName", None)) or None
    ds_id = ref_id(getattr(backing, "datastore", None))
    rdm = isinstance(backing, D.VirtualDisk.RawDiskMappingVer1BackingInfo)
    mode = DISK_MODES.get(str(getattr(backing, "diskMode", "") or ""), DiskMode.PERSISTENT)
    sharing = Sharing.MULTI_WRITER if getattr(backing, "sharing", None) == Sharing.MULTI_WRITER.value else Sharing.NONE
    thin = getattr(backing, "thinProvisioned", None)
    eager = getattr(backing, "eagerlyScrub", None)
    allocated = None
    layout = disk_files.get(device.key)
    if layout is not None and files:
        keys = {k for unit_files in layout.chain or () for k in unit_files.fileKey or ()}
        if keys and all(k in files for k in keys):
            allocated = sum(files[k] for k in keys)
    # CBT per disk: a change id proves it is on; the per-disk ctkEnabled key says so otherwise.
    cbt: bool | None
    if getattr(backing, "changeId", None):
        cbt = True
    else:
        ctk = extra.get(f"{controller.kind.value}{controller.bus_number}:{unit}.ctkEnabled")
        if ctk is not None:
            cbt = ctk.lower() in TRUE_WORDS
        elif vm_cbt is False:
            cbt = False
        else:
            cbt = None
    return Disk(
        label=_label(device),
        capacity_bytes=int(capacity),
        controller=controller,
        unit_number=unit,
        backing_file=file_name,
        datastore=(estate.names.get(ds_id) if ds_id else None) or _datastore_of(file_name),
        thin=None if thin is None or rdm else bool(thin),
        eager_zeroed=None if eager is None or rdm else bool(eager),
        sharing=sharing,
        mode=mode,
        rdm=rdm,
        rdm_compatibility=_s(getattr(backing, "compatibilityMode", None)) if rdm else None,
        allocated_bytes=allocated,
        cbt_enabled=cbt,
        uuid=_s(getattr(backing, "uuid", None)) or None,
        encrypted=getattr(backing, "keyId", None) is not None,
        key=device.key,
        format_hint="vmdk",
    )


def _nic(device: Any, estate: Estate, guest_ips: dict[int | str, list[str]]) -> Nic:
    model = next((name for cls, name in NIC_MODELS if isinstance(device, cls)), "unknown")
    backing = device.backing
    network: str | None = None
    if isinstance(backing, D.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
        key = backing.port.portgroupKey if backing.port is not None else None
        network = estate.portgroups.get(key or "") or _s(key)
    elif isinstance(backing, D.VirtualEthernetCard.NetworkBackingInfo):
        net_id = ref_id(backing.network)
        network = (estate.names.get(net_id) if net_id else None) or _s(backing.deviceName)
    elif isinstance(backing, D.VirtualEthernetCard.OpaqueNetworkBackingInfo):
        network = _s(backing.opaqueNetworkId)
    connectable = device.connectable
    mac = _s(device.macAddress) or None
    slot_info = getattr(device, "slotInfo", None)
    slot = getattr(slot_info, "pciSlotNumber", None) if slot_info is not None else None
    return Nic(
        label=_label(device),
        model=model,
        mac=mac.lower() if mac else None,
        network=network,
        connected=bool(connectable.connected) if connectable is not None else True,
        start_connected=bool(connectable.startConnected) if connectable is not None else True,
        key=device.key,
        ips=list(guest_ips.get(device.key) or guest_ips.get((mac or "").lower()) or ()),
        pci_slot=int(slot) if isinstance(slot, int) and slot > 0 else None,
    )


def _guest_ips(guest_net: Any) -> dict[int | str, list[str]]:
    """Guest-reported addresses per NIC, keyed by device key and by MAC."""
    found: dict[int | str, list[str]] = {}
    for info in guest_net or ():
        addresses = [str(a) for a in info.ipAddress or ()]
        if info.deviceConfigId is not None and info.deviceConfigId >= 0:
            found[int(info.deviceConfigId)] = addresses
        if info.macAddress:
            found[str(info.macAddress).lower()] = addresses
    return found


def _cdrom(device: Any, controllers: dict[int, Controller]) -> inventory.CdRom:
    backing = device.backing
    iso = _s(backing.fileName) if isinstance(backing, D.VirtualCdrom.IsoBackingInfo) else None
    connectable = device.connectable
    return inventory.CdRom(
        label=_label(device),
        controller=controllers.get(device.controllerKey) or _unknown_controller(device.controllerKey),
        unit_number=int(device.unitNumber) if device.unitNumber is not None else -1,
        iso_file=iso or None,
        connected=bool(connectable.connected) if connectable is not None else False,
        start_connected=bool(connectable.startConnected) if connectable is not None else False,
        key=device.key,
    )


def _pci_passthrough(device: Any) -> PassthroughDevice:
    backing = device.backing
    if isinstance(backing, D.VirtualPCIPassthrough.VmiopBackingInfo):
        return PassthroughDevice(label=_label(device), kind="vgpu", detail=_s(backing.vgpu))
    dvx = getattr(D.VirtualPCIPassthrough, "DvxBackingInfo", None)
    if dvx is not None and isinstance(backing, dvx):
        return PassthroughDevice(label=_label(device), kind="dvx", detail=_s(getattr(backing, "deviceClass", None)))
    detail = getattr(backing, "id", None) or getattr(backing, "deviceName", None) or _summary(device)
    return PassthroughDevice(label=_label(device), kind="pci", detail=_s(detail))


def _snapshots(info: Any) -> list[Snapshot]:
    """The snapshot tree, flattened depth-first."""
    found: list[Snapshot] = []
    stack = list(reversed(getattr(info, "rootSnapshotList", None) or []))
    while stack:
        node = stack.pop()
        children = list(node.childSnapshotList or [])
        created = node.createTime.isoformat() if node.createTime is not None else None
        found.append(Snapshot(name=str(node.name), created=created, children=len(children)))
        stack.extend(reversed(children))
    return found


def _int_list(text: str | None) -> list[int]:
    if not text:
        return []
    return [int(part) for part in text.replace(";", ",").split(",") if part.strip().isdigit()]


def _cluster(cluster_id: str | None, vm_id: str, estate: Estate) -> ClusterFacts | None:
    if not cluster_id or estate.types.get(cluster_id) != "ClusterComputeResource":
        return None
    config = estate.clusters.get(cluster_id)
    drs = getattr(config, "drsConfig", None)
    dpm = getattr(config, "dpmConfigInfo", None)
    behavior = getattr(drs, "defaultVmBehavior", None)
    drs_enabled = getattr(drs, "enabled", None)
    for override in getattr(config, "drsVmConfig", None) or ():
        if ref_id(override.key) == vm_id:
            behavior = override.behavior or behavior
            if override.enabled is not None:
                drs_enabled = bool(drs_enabled) and bool(override.enabled)
    return ClusterFacts(
        name=estate.names.get(cluster_id, cluster_id),
        drs_enabled=None if drs_enabled is None else bool(drs_enabled),
        drs_behavior=str(behavior) if behavior else None,
        dpm_enabled=None if dpm is None or dpm.enabled is None else bool(dpm.enabled),
    )


def host_affinity(estate: Estate) -> set[str]:
    """VMs named by an enabled VM-host rule (through its VM group) in any cluster."""
    named: set[str] = set()
    for config in estate.clusters.values():
        if config is None:
            continue
        groups = {
            g.name: {ref_id(vm) for vm in g.vm or ()} for g in config.group or () if isinstance(g, vim.cluster.VmGroup)
        }
        for rule in config.rule or ():
            if isinstance(rule, vim.cluster.VmHostRuleInfo) and rule.enabled is not False:
                named |= {m for m in groups.get(rule.vmGroupName, set()) if m}
    return named


def vm_datastore_folder(vmx_path: str | None) -> tuple[str, str] | None:
    """``("LocalDS_0", "DC0_H0_VM0")`` from ``"[LocalDS_0] DC0_H0_VM0/DC0_H0_VM0.vmx"``."""
    datastore = _datastore_of(vmx_path)
    if datastore is None or vmx_path is None:
        return None
    path = vmx_path[vmx_path.index("]") + 1 :].strip()
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    return datastore, folder
