"""Fetching the estate: one ContainerView and one paged PropertyCollector retrieval.

Every object type the translation needs (VMs, and the folders, datacenters, hosts,
clusters, datastores and networks they refer to) comes back in the SAME retrieval, paged
with RetrievePropertiesEx / ContinueRetrievePropertiesEx. There is no round trip per VM, and
the result is plain ``RawObject`` records (type, moref id, ``{property path: value}``) so the
translation never touches a pyvmomi ManagedObject lazily.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim, vmodl

PAGE_SIZE = 1000

# What the translation reads from each VM: only these sub-trees cross the wire.
VM_PROPERTIES: tuple[str, ...] = (
    "name",
    "parent",
    "config.template",
    "config.uuid",
    "config.instanceUuid",
    "config.guestId",
    "config.guestFullName",
    "config.annotation",
    "config.firmware",
    "config.bootOptions",
    "config.hardware.numCPU",
    "config.hardware.numCoresPerSocket",
    "config.hardware.memoryMB",
    "config.hardware.device",
    "config.changeTrackingEnabled",
    "config.cpuHotAddEnabled",
    "config.memoryHotAddEnabled",
    "config.cpuAffinity",
    "config.ftInfo",
    "config.keyId",
    "config.extraConfig",
    "config.files.vmPathName",
    "runtime.powerState",
    "runtime.host",
    "runtime.consolidationNeeded",
    "guest.toolsStatus",
    "guest.toolsRunningStatus",
    "guest.hostName",
    "guest.ipAddress",
    "guest.net",
    "snapshot",
    "layoutEx.file",
    "layoutEx.disk",
)

# The objects VMs refer to, fetched in the same retrieval.
CONTEXT_PROPERTIES: dict[type, tuple[str, ...]] = {
    vim.Folder: ("name", "parent"),
    vim.Datacenter: ("name", "parent"),
    vim.HostSystem: ("name", "parent"),
    vim.ComputeResource: ("name", "parent"),
    vim.ClusterComputeResource: ("configurationEx",),
    vim.Datastore: ("name", "parent"),
    vim.Network: ("name", "parent"),
    vim.dvs.DistributedVirtualPortgroup: ("key",),
}

ESTATE_PROPERTIES: dict[type, tuple[str, ...]] = {vim.VirtualMachine: VM_PROPERTIES, **CONTEXT_PROPERTIES}


@dataclass
class RawObject:
    """One managed object as the PropertyCollector returned it."""

    type: str  # the wsdl type name: VirtualMachine, Folder, ClusterComputeResource, ...
    moid: str
    props: dict[str, Any]


def ref_id(value: Any) -> str | None:
    """The moref id of a ManagedObject reference value, without any round trip."""
    return None if value is None else str(value._moId)


def retrieve(
    collector: vmodl.query.PropertyCollector,
    object_specs: Sequence[vmodl.query.PropertyCollector.ObjectSpec],
    properties: dict[type, tuple[str, ...]],
    *,
    page_size: int = PAGE_SIZE,
) -> list[RawObject]:
    """One paged retrieval of ``properties`` for everything ``object_specs`` select."""
    prop_specs = [
        vmodl.query.PropertyCollector.PropertySpec(type=kind, pathSet=list(paths), all=False)
        for kind, paths in properties.items()
    ]
    spec = vmodl.query.PropertyCollector.FilterSpec(objectSet=list(object_specs), propSet=prop_specs)
    options = vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=page_size)
    found: dict[str, RawObject] = {}
    result = collector.RetrievePropertiesEx([spec], options)
    while result is not None:
        _collect(result.objects, found)
        token = result.token
        result = collector.ContinueRetrievePropertiesEx(token) if token else None
    return list(found.values())


def container_spec(view: vim.view.ContainerView) -> vmodl.query.PropertyCollector.ObjectSpec:
    traverse = vmodl.query.PropertyCollector.TraversalSpec(
        name="view", type=vim.view.ContainerView, path="view", skip=False
    )
    return vmodl.query.PropertyCollector.ObjectSpec(obj=view, skip=True, selectSet=[traverse])


def object_spec(obj: vim.ManagedEntity) -> vmodl.query.PropertyCollector.ObjectSpec:
    return vmodl.query.PropertyCollector.ObjectSpec(obj=obj, skip=False)


def retrieve_in_view(
    content: vim.ServiceInstanceContent,
    collector: vmodl.query.PropertyCollector,
    types: Iterable[type],
    properties: dict[type, tuple[str, ...]],
    *,
    root: vim.ManagedEntity | None = None,
    extra: Sequence[vmodl.query.PropertyCollector.ObjectSpec] = (),
    page_size: int = PAGE_SIZE,
) -> list[RawObject]:
    """Everything of ``types`` under ``root`` (default: the root folder), plus ``extra`` objects, at once."""
    view = content.viewManager.CreateContainerView(root or content.rootFolder, list(types), True)
    try:
        return retrieve(collector, [container_spec(view), *extra], properties, page_size=page_size)
    finally:
        view.DestroyView()


def _collect(objects: Iterable[Any] | None, found: dict[str, RawObject]) -> None:
    for content in objects or ():
        obj = content.obj
        key = f"{obj._wsdlName}:{obj._moId}"
        record = found.get(key)
        if record is None:
            record = found[key] = RawObject(type=obj._wsdlName, moid=obj._moId, props={})
        for prop in content.propSet or ():
            record.props[prop.name] = prop.val
