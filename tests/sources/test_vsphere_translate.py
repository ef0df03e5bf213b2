"""The pure translation on devices the simulator cannot produce (real pyvmomi data objects, no server)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import yaml
from pyVmomi import vim

from core.inventory import ControllerKind, DiskMode, Sharing
from migrator.sources.vsphere.collector import RawObject
from migrator.sources.vsphere.translate import Estate, translate_estate, vm_datastore_folder

D = vim.vm.device


def ref(kind: Any, moid: str) -> Any:
    return kind(moid)


def estate_with(devices: list[Any], **props: Any) -> Estate:
    cluster_config = vim.cluster.ConfigInfoEx(
        drsConfig=vim.cluster.DrsConfigInfo(enabled=True, defaultVmBehavior="fullyAutomated"),
        dpmConfigInfo=vim.cluster.DpmConfigInfo(enabled=True),
    )
    objects = [
        RawObject("Folder", "group-d1", {"name": "Datacenters"}),
        RawObject("Datacenter", "dc-1", {"name": "DC1", "parent": ref(vim.Folder, "group-d1")}),
        RawObject("Folder", "f-vm", {"name": "vm", "parent": ref(vim.Datacenter, "dc-1")}),
        RawObject("Folder", "f-prod", {"name": "prod", "parent": ref(vim.Folder, "f-vm")}),
        RawObject("ClusterComputeResource", "c-1", {"name": "C1", "configurationEx": cluster_config}),
        RawObject("HostSystem", "h-1", {"name": "esx1", "parent": ref(vim.ClusterComputeResource, "c-1")}),
        RawObject("Datastore", "ds-1", {"name": "SAN01"}),
        RawObject("Network", "net-1", {"name": "VM Network"}),
        RawObject("DistributedVirtualPortgroup", "dvpg-7", {"name": "prod-pg", "key": "dvportgroup-7"}),
        RawObject(
            "VirtualMachine",
            "vm-9",
            {
                "name": "db01",
                "parent": ref(vim.Folder, "f-prod"),
                "runtime.host": ref(vim.HostSystem, "h-1"),
                "config.hardware.device": devices,
                "config.hardware.numCPU": 8,
                "config.hardware.numCoresPerSocket": 4,
                "config.hardware.memoryMB": 4096,
                **props,
            },
        ),
    ]
    return Estate.from_objects(objects)


def test_translation_of_rare_devices() -> None:
    scsi = D.VirtualLsiLogicSASController(key=1000, busNumber=1, sharedBus="physicalSharing")
    sata = D.VirtualAHCIController(key=15000, busNumber=0)
    rdm = D.VirtualDisk(
        key=2000,
        controllerKey=1000,
        unitNumber=3,
        capacityInKB=10 * 1024 * 1024,
        deviceInfo=vim.Description(label="Hard disk 2", summary=""),
        backing=D.VirtualDisk.RawDiskMappingVer1BackingInfo(
            fileName="[SAN01] db01/db01_1.vmdk",
            compatibilityMode="physicalMode",
            diskMode="independent_persistent",
            sharing="sharingMultiWriter",
            uuid="6000C29d-0000",
        ),
    )
    flat = D.VirtualDisk(
        key=2001,
        controllerKey=1000,
        unitNumber=0,
        capacityInBytes=4 << 30,
        deviceInfo=vim.Description(label="Hard disk 1", summary=""),
        backing=D.VirtualDisk.FlatVer2BackingInfo(
            fileName="[SAN01] db01/db01.vmdk",
            datastore=ref(vim.Datastore, "ds-1"),
            diskMode="persistent",
            thinProvisioned=False,
            eagerlyScrub=True,
            changeId="52 aa/1",
            keyId=vim.encryption.CryptoKeyId(keyId="k1"),
        ),
    )
    sriov = D.VirtualSriovEthernetCard(
        key=4000,
        macAddress="00:50:56:AA:00:01",
        backing=D.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
            port=vim.dvs.PortConnection(portgroupKey="dvportgroup-7", switchUuid="x")
        ),
    )
    pcnet = D.VirtualPCNet32(
        key=4001,
        macAddress="00:50:56:aa:00:02",
        backing=D.VirtualEthernetCard.NetworkBackingInfo(deviceName="VM Network", network=ref(vim.Network, "net-1")),
    )
    vgpu = D.VirtualPCIPassthrough(
        key=5000,
        deviceInfo=vim.Description(label="PCI device 0", summary=""),
        backing=D.VirtualPCIPassthrough.VmiopBackingInfo(vgpu="grid_t4-4q"),
    )
    cdrom = D.VirtualCdrom(
        key=3000, controllerKey=15000, unitNumber=1, backing=D.VirtualCdrom.IsoBackingInfo(fileName="[SAN01] iso/x.iso")
    )
    usb = D.VirtualUSBController(key=7000, ehciEnabled=True)
    tpm = D.VirtualTPM(key=11000)
    child = vim.vm.SnapshotTree(name="child", createTime=datetime(2024, 1, 2, tzinfo=UTC), childSnapshotList=[])
    root = vim.vm.SnapshotTree(name="root", createTime=datetime(2024, 1, 1, tzinfo=UTC), childSnapshotList=[child])
    layout_files = [
        vim.vm.FileLayoutEx.FileInfo(key=1, name="[SAN01] db01/db01.vmdk", type="diskDescriptor", size=500),
        vim.vm.FileLayoutEx.FileInfo(key=2, name="[SAN01] db01/db01-flat.vmdk", type="diskExtent", size=123456),
    ]
    layout_disks = [
        vim.vm.FileLayoutEx.DiskLayout(key=2001, chain=[vim.vm.FileLayoutEx.DiskUnit(fileKey=[1, 2])]),
    ]
    estate = estate_with(
        [scsi, sata, rdm, flat, sriov, pcnet, vgpu, cdrom, usb, tpm],
        **{
            "config.ftInfo": vim.vm.FaultToleranceConfigInfo(
                role=1, instanceUuids=["a", "b"], configPaths=["[SAN01] db01/db01.vmx"]
            ),
            "config.keyId": vim.encryption.CryptoKeyId(keyId="vm-key"),
            "config.changeTrackingEnabled": True,
            "config.extraConfig": [vim.option.OptionValue(key="scsi1:3.ctkEnabled", value="FALSE")],
            "snapshot": vim.vm.SnapshotInfo(rootSnapshotList=[root]),
            "runtime.consolidationNeeded": True,
            "layoutEx.file": layout_files,
            "layoutEx.disk": layout_disks,
            "guest.net": [vim.vm.GuestInfo.NicInfo(deviceConfigId=4001, macAddress="x", ipAddress=["10.0.0.5"])],
        },
    )
    [vm] = translate_estate(estate)
    assert vm.folder == "/DC1/vm/prod" and vm.datacenter == "DC1" and vm.host == "esx1"
    assert vm.cluster is not None and vm.cluster.name == "C1"
    assert vm.cluster.dpm_enabled is True and vm.cluster.drs_behavior == "fullyAutomated"
    assert (vm.cpu.sockets, vm.cpu.cores_per_socket) == (2, 4)
    assert vm.vtpm and vm.fault_tolerance and vm.encrypted and vm.consolidation_needed
    assert [s.name for s in vm.snapshots] == ["root", "child"] and vm.snapshots[0].children == 1
    d_rdm, d_flat = vm.disks
    assert d_rdm.rdm and d_rdm.rdm_compatibility == "physicalMode" and d_rdm.thin is None
    assert d_rdm.mode is DiskMode.INDEPENDENT_PERSISTENT and d_rdm.mode.independent
    assert d_rdm.sharing is Sharing.MULTI_WRITER and d_rdm.cbt_enabled is False
    assert d_rdm.controller.model == "lsisas1068" and d_rdm.controller.shared_bus == "physicalSharing"
    assert d_rdm.capacity_bytes == 10 << 30 and d_rdm.datastore == "SAN01" and d_rdm.allocated_bytes is None
    assert d_flat.capacity_bytes == 4 << 30 and d_flat.thin is False and d_flat.eager_zeroed is True
    assert d_flat.cbt_enabled is True and d_flat.encrypted and d_flat.allocated_bytes == 123456
    assert [(n.model, n.mac, n.network) for n in vm.nics] == [
        ("sriov", "00:50:56:aa:00:01", "prod-pg"),
        ("pcnet32", "00:50:56:aa:00:02", "VM Network"),
    ]
    assert vm.nics[1].ips == ["10.0.0.5"] and vm.ip_addresses == ["10.0.0.5"]
    assert [(p.kind, p.detail) for p in vm.passthrough] == [("vgpu", "grid_t4-4q")]
    assert vm.usb_controllers == ["usb", "usb.ehci"]
    assert vm.cdroms[0].iso_file == "[SAN01] iso/x.iso" and vm.cdroms[0].controller.kind is ControllerKind.SATA
    assert vm.to_dict()["disks"][0]["mode"] == "independent_persistent"
    assert yaml.safe_load(yaml.safe_dump(vm.to_dict())) == vm.to_dict()  # plain data, no pyvmomi inside


def test_vm_datastore_folder() -> None:
    assert vm_datastore_folder("[LocalDS_0] DC0_H0_VM0/DC0_H0_VM0.vmx") == ("LocalDS_0", "DC0_H0_VM0")
    assert vm_datastore_folder("[ds 1] a b/c/x.vmx") == ("ds 1", "a b/c")
    assert vm_datastore_folder("x.vmx") is None
