"""What a warm migration asks of vSphere: snapshots, changed-block tracking, and the changed areas.

``VSphereChanges(source)`` satisfies ``migrator.cutover.precopy.ChangeTracking``. Properties are read
through the property collector (RetrievePropertiesEx), never through a managed object's accessor:
an unset property (a VM without snapshots) is simply absent from the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyVmomi import vim, vmodl

from core.errors import SourceError
from migrator.sources.vsphere.connection import fault_message
from migrator.sources.vsphere.operations import wait_for_task
from migrator.sources.vsphere.source import VSphereSource


class ChangeIdRejected(SourceError):
    """vSphere refused a changeId (tracking was reset since it was issued): copy that disk in full."""


@dataclass(frozen=True)
class SnapshotRef:
    id: str  # the snapshot's managed object id, e.g. "snapshot-63"
    name: str


@dataclass(frozen=True)
class SnapshotDisk:
    key: int  # the virtual disk's device key
    label: str  # "Hard disk 1"
    file: str  # "[ds] vm/disk.vmdk": the file holding the snapshot's state of the disk
    capacity_bytes: int
    change_id: str | None


@dataclass(frozen=True)
class ChangedAreas:
    start: int  # the range of the disk the answer covers
    length: int
    areas: list[tuple[int, int]]  # (offset, length) pairs that changed within it


def _props(source: VSphereSource, obj: Any, paths: list[str]) -> dict[str, Any]:
    collector = source.content.propertyCollector
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=obj, skip=False)],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=type(obj), pathSet=paths, all=False)],
    )
    try:
        result = collector.RetrievePropertiesEx(specSet=[spec], options=vmodl.query.PropertyCollector.RetrieveOptions())
    except vmodl.MethodFault as fault:
        raise SourceError(f"reading {', '.join(paths)} failed: {fault_message(fault)}") from None
    found: dict[str, Any] = {}
    for content in (result.objects if result else None) or []:
        for prop in content.propSet or []:
            found[prop.name] = prop.val
    return found


def _tree(info: Any) -> list[Any]:
    nodes, stack = [], list(getattr(info, "rootSnapshotList", None) or [])
    while stack:
        node = stack.pop(0)
        nodes.append(node)
        stack.extend(node.childSnapshotList or [])
    return nodes


def _disks(devices: Any) -> list[SnapshotDisk]:
    disks = []
    for device in devices or []:
        if not isinstance(device, vim.vm.device.VirtualDisk):
            continue
        backing = device.backing
        capacity = int(device.capacityInBytes or 0) or int(device.capacityInKB or 0) * 1024
        disks.append(
            SnapshotDisk(
                key=int(device.key),
                label=str(device.deviceInfo.label) if device.deviceInfo else f"disk {device.key}",
                file=str(getattr(backing, "fileName", "") or ""),
                capacity_bytes=capacity,
                change_id=getattr(backing, "changeId", None) or None,
            )
        )
    return disks


class VSphereChanges:
    def __init__(self, source: VSphereSource) -> None:
        self.source = source
        self._vms: dict[str, vim.VirtualMachine] = {}

    def keep_alive(self) -> None:
        self.source.keep_alive()

    def _vm(self, name: str) -> vim.VirtualMachine:
        # Found once per name: a lookup reads every VM's name, and a round makes a dozen calls on the VM.
        if name not in self._vms:
            self._vms[name] = self.source.find_vm(name)
        return self._vms[name]

    def _snapshot(self, snapshot_id: str) -> vim.vm.Snapshot:
        return vim.vm.Snapshot(snapshot_id, self.source.service_instance._stub)

    def snapshots(self, vm: str) -> list[SnapshotRef]:
        info = _props(self.source, self._vm(vm), ["snapshot"]).get("snapshot")
        return [SnapshotRef(id=node.snapshot._moId, name=str(node.name)) for node in _tree(info)]

    def tools_running(self, vm: str) -> bool:
        status = _props(self.source, self._vm(vm), ["guest.toolsRunningStatus"]).get("guest.toolsRunningStatus")
        return status == vim.VirtualMachineToolsRunningStatus.guestToolsRunning

    def create_snapshot(self, vm: str, name: str, *, quiesce: bool) -> SnapshotRef:
        what = f"snapshot {name} of {vm}"
        try:
            task = self._vm(vm).CreateSnapshot_Task(
                name=name, description="taken by migrator for a warm migration", memory=False, quiesce=quiesce
            )
        except vmodl.MethodFault as fault:
            raise SourceError(f"{what} failed: {fault_message(fault)}") from None
        snapshot = wait_for_task(task, what)
        return SnapshotRef(id=snapshot._moId, name=name)

    def remove_snapshot(self, vm: str, snapshot_id: str) -> bool:
        """Remove one snapshot (not its children); False when it is already gone."""
        if snapshot_id not in {s.id for s in self.snapshots(vm)}:
            return False
        try:
            task = self._snapshot(snapshot_id).RemoveSnapshot_Task(removeChildren=False, consolidate=True)
        except vmodl.fault.ManagedObjectNotFound:
            return False
        except vmodl.MethodFault as fault:
            raise SourceError(f"removing snapshot {snapshot_id} of {vm} failed: {fault_message(fault)}") from None
        wait_for_task(task, f"remove snapshot {snapshot_id} of {vm}")
        return True

    def snapshot_disks(self, snapshot_id: str) -> list[SnapshotDisk]:
        config = _props(self.source, self._snapshot(snapshot_id), ["config.hardware.device"])
        return _disks(config.get("config.hardware.device"))

    def enable_cbt(self, vm: str) -> None:
        """changeTrackingEnabled on, through ReconfigVM (vSphere starts tracking at the next stun/unstun)."""
        what = f"enable changed-block tracking on {vm}"
        try:
            task = self._vm(vm).ReconfigVM_Task(spec=vim.vm.ConfigSpec(changeTrackingEnabled=True))
        except vmodl.MethodFault as fault:
            raise SourceError(f"{what} failed: {fault_message(fault)}") from None
        wait_for_task(task, what)

    def changed_areas(self, vm: str, snapshot_id: str, disk_key: int, start: int, change_id: str) -> ChangedAreas:
        try:
            info = self._vm(vm).QueryChangedDiskAreas(
                snapshot=self._snapshot(snapshot_id), deviceKey=disk_key, startOffset=start, changeId=change_id
            )
        except vim.fault.FileFault as fault:
            raise ChangeIdRejected(f"changeId {change_id!r} rejected: {fault_message(fault)}") from None
        except vmodl.MethodFault as fault:
            raise SourceError(f"QueryChangedDiskAreas on {vm} failed: {fault_message(fault)}") from None
        areas = [(int(a.start), int(a.length)) for a in info.changedArea or []]
        return ChangedAreas(start=int(info.startOffset), length=int(info.length), areas=areas)
