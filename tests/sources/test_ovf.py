"""The OVF / OVA source: every shared sample, an OVA built here with a real VMDK, bad input."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from core.errors import InputError
from core.inventory import ControllerKind, Firmware
from migrator.sources import open_source
from migrator.sources.ovf import units_to_bytes
from tests.conftest import SAMPLES_OVF
from tests.planning.cli import assert_one_line_error, run_migrator

MIB, GIB = 2**20, 2**30


def vms_of(name: str):
    return open_source(f"ovf:{SAMPLES_OVF / name}").inventory().vms


def test_every_sample_parses() -> None:
    samples = sorted(SAMPLES_OVF.glob("*.ovf"))
    assert len(samples) >= 18
    total = 0
    for sample in samples:
        vms = open_source(f"ovf:{sample}").inventory().vms
        assert vms, sample
        for vm in vms:
            assert vm.name and vm.cpu.vcpus >= 1
            assert all(d.capacity_bytes > 0 for d in vm.disks), sample
        total += len(vms)
    assert total == 21  # 18 descriptors; three vApps hold two VMs each


def test_cores_per_socket() -> None:
    (vm,) = vms_of("cores-per-socket__multi-core-vm__multi-core-vm.ovf")
    assert (vm.cpu.sockets, vm.cpu.cores_per_socket) == (2, 2)
    assert vm.memory_mib == 4
    assert vm.disks[0].capacity_bytes == 2 * MIB and vm.disks[0].controller.model == "lsisas1068"
    assert [(n.model, n.network) for n in vm.nics] == [("e1000", "Automation")]
    assert vm.guest_id == "windows7Guest" and vm.guest_name == "Microsoft Windows 7 (32-bit)"
    assert vm.cdroms[0].controller.kind is ControllerKind.IDE and vm.cdroms[0].controller.bus_number == 1
    (single,) = vms_of("cores-per-socket__single-core-vm__single-core-vm.ovf")
    assert (single.cpu.sockets, single.cpu.cores_per_socket) == (1, 1)


def test_ubuntu_server() -> None:
    (vm,) = vms_of("Alpha-demo__Ubuntu-12.04.2-64-Server-Tools__Ubuntu-12.04.2-64-Server-Tools.ovf")
    assert (vm.cpu.sockets, vm.cpu.cores_per_socket) == (1, 4)
    assert vm.memory_mib == 2048
    assert vm.disks[0].capacity_bytes == 40 * GIB
    assert vm.guest_id == "ubuntu64Guest"


def test_multi_vm_vapps() -> None:
    vms = vms_of("Alpha-demo__vApp_with_2vms__vApp_with_2vms.ovf")
    assert [vm.name for vm in vms] == ["sql2k5-win-2k3-32-ent-sp2-ovf", "centos-5.5-32-esx-qa"]
    assert {vm.folder for vm in vms} == {"/sql2k5-win-2k3-32-ent-sp2-ovf"}
    assert [vm.memory_mib for vm in vms] == [1024, 256]
    assert vms[0].nics[0].model == "pcnet32" and vms[1].nics[0].model == "e1000"
    pair = vms_of("vappMultiVMs__vappMultiVMs-Nic.ovf")
    assert [vm.name for vm in pair] == ["Vm1", "Vm2"]
    assert [vm.disks[0].capacity_bytes for vm in pair] == [2 * MIB, 4 * MIB]


def test_ide_sas_and_pvscsi_and_mac() -> None:
    (ide_sas,) = vms_of("DeleteHDTestdata__IdeSas__IdeSas.ovf")
    assert [(d.controller.kind, d.controller.model, d.unit_number) for d in ide_sas.disks] == [
        (ControllerKind.IDE, "ide", 1),
        (ControllerKind.SCSI, "lsisas1068", 1),
    ]
    assert ide_sas.nics[0].mac == "00:50:56:0e:00:fa" and ide_sas.nics[0].network == "VappNetworks"
    assert ide_sas.bios_uuid == "422c5082-d330-cc0e-c38c-a86cd7c15879"
    (pv,) = vms_of("DeleteHDTestdata__PvScsis__PvScsis.ovf")
    assert [d.controller.model for d in pv.disks] == ["pvscsi", "pvscsi"]
    assert [d.capacity_bytes for d in pv.disks] == [4 * MIB, 8 * MIB]


def test_pci_passthrough_and_vgpu() -> None:
    (ah,) = vms_of("pci-passthrough__ah__AH-VM-1.ovf")
    assert [p.kind for p in ah.passthrough] == ["pci", "pci"]
    assert ah.passthrough[0].detail.startswith("0x8086:0x10d3")
    assert ah.nics[0].model == "pcnet32" and ah.memory_mib == 128
    (vgpu,) = vms_of("pci-passthrough__vgpu__VM-PCI-VGPU.ovf")
    assert [(p.kind, p.detail) for p in vgpu.passthrough] == [("vgpu", "mockup-vmiop")]
    assert vgpu.firmware is Firmware.EFI and vgpu.secure_boot
    assert vgpu.usb_controllers == ["usb_xhci"]
    assert vgpu.nics[0].model == "e1000e"
    assert vgpu.disks[0].capacity_bytes == GIB


def test_windows_2008_sata_and_usb() -> None:
    (vm,) = vms_of("WindowsServer2008__Windows_Server_2008_R2_x64.ovf")
    assert vm.cpu.vcpus == 2 and vm.memory_mib == 2048
    assert vm.disks[0].capacity_bytes == 40 * GIB
    assert vm.cdroms[0].controller.kind is ControllerKind.SATA
    assert vm.usb_controllers == ["usb.ehci"]


def test_units() -> None:
    assert units_to_bytes("byte * 2^20") == MIB
    assert units_to_bytes("byte") == 1
    assert units_to_bytes("GigaBytes") == GIB
    with pytest.raises(InputError):
        units_to_bytes("furlongs")


def build_ova(tmp_path: Path, drop_disk: bool = False) -> Path:
    """An OVA from a sample descriptor and a real streamOptimized VMDK made by qemu-img."""
    sample = SAMPLES_OVF / "cores-per-socket__multi-core-vm__multi-core-vm.ovf"
    disk = tmp_path / "multi-core-vm-disk1.vmdk"
    subprocess.run(
        ["qemu-img", "create", "-f", "vmdk", "-o", "subformat=streamOptimized", str(disk), "2M"],
        check=True,
        capture_output=True,
    )
    ova = tmp_path / "multi-core-vm.ova"
    with tarfile.open(ova, "w") as tar:
        tar.add(sample, arcname="multi-core-vm.ovf")
        manifest = b"SHA256(multi-core-vm.ovf)= 00\n"
        info = tarfile.TarInfo("multi-core-vm.mf")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        if not drop_disk:
            tar.add(disk, arcname=disk.name)
    return ova


def test_ova(tmp_path: Path) -> None:
    ova = build_ova(tmp_path)
    inventory = open_source(f"ova:{ova}").inventory()
    (vm,) = inventory.vms
    assert inventory.source_url == f"ova:{ova}"
    assert (vm.cpu.sockets, vm.cpu.cores_per_socket) == (2, 2)
    assert vm.disks[0].capacity_bytes == 2 * MIB
    assert vm.disks[0].backing_file == "multi-core-vm-disk1.vmdk"  # a member name: nothing was extracted
    assert vm.disks[0].allocated_bytes == (tmp_path / "multi-core-vm-disk1.vmdk").stat().st_size
    assert not (tmp_path / "multi-core-vm.ovf").exists()


def test_ova_missing_member_through_cli(tmp_path: Path) -> None:
    ova = build_ova(tmp_path, drop_disk=True)
    result = run_migrator("plan", "--source", f"ova:{ova}", cwd=tmp_path)
    assert_one_line_error(result, "multi-core-vm-disk1.vmdk", "missing")
    assert result.returncode == 2


def test_ova_not_a_tar_and_first_member(tmp_path: Path) -> None:
    junk = tmp_path / "junk.ova"
    junk.write_bytes(b"this is not a tar archive" * 40)
    with pytest.raises(InputError, match="not a valid OVA"):
        open_source(f"ova:{junk}").inventory()
    wrong = tmp_path / "wrong.ova"
    with tarfile.open(wrong, "w") as tar:
        tar.add(SAMPLES_OVF / "CentOS__centos.ovf", arcname="readme.txt")
    with pytest.raises(InputError, match="first member"):
        open_source(f"ova:{wrong}").inventory()


def test_malformed_ovf_through_cli(tmp_path: Path) -> None:
    broken = tmp_path / "broken.ovf"
    broken.write_text((SAMPLES_OVF / "CentOS__centos.ovf").read_text()[:900])
    result = run_migrator("plan", "--source", f"ovf:{broken}", "-o", "json", cwd=tmp_path)
    assert_one_line_error(result, "not a valid OVF descriptor")
    other = tmp_path / "other.ovf"
    other.write_text("<html><body>hello</body></html>")
    assert_one_line_error(run_migrator("plan", "--source", f"ovf:{other}", cwd=tmp_path), "<html>")


# (descriptor, VM, vCPUs, memory MiB, disk capacities, disk controller models, NIC models, guest id) read from the files
FACTS = [
    ("Alpha-demo__Mini-Ubuntu-32bit-HW8-Tools__Mini-Ubuntu-32bit-HW8-Tools.ovf", "Mini-Ubuntu-32bit-HW8-Tools",
     1, 256, [2 * GIB], ["lsilogic"], ["pcnet32"], "ubuntuGuest"),
    ("Alpha-demo__Windows-Server2003-SP2-64-R2__Windows-Server2003-SP2-64-R2.ovf", "Windows-Server2003-SP2-64-R2",
     4, 2048, [40 * GIB], ["lsilogic"], ["e1000"], "winNetEnterprise64Guest"),
    ("Alpha-demo__sql2k5-win-2k3-32-ent-sp2-ovf__sql2k5-win-2k3-32-ent-sp2-ovf.ovf", "sql2k5-win-2k3-32-ent-sp2-ovf",
     1, 1024, [10 * GIB], ["lsilogic"], ["pcnet32"], "winNetStandardGuest"),
    ("Alpha-demo__w2k3R2_32-toolsHWv9__w2k3R2_32-toolsHWv9.ovf", "w2k3R2_32-toolsHWv9",
     1, 512, [2 * GIB], ["lsilogic"], ["e1000"], "winNetStandardGuest"),
    ("Alpha-demo__win2k3_centos_vms__win2k3_centos_vms.ovf", "win2k3ent-64_snapshots",
     2, 512, [4 * GIB], ["lsilogic"], ["e1000"], "winNetEnterprise64Guest"),
    ("Alpha-demo__win2k3_centos_vms__win2k3_centos_vms.ovf", "CG_Ubuntu_10.10_64bit",
     1, 512, [8 * GIB], ["lsilogic"], ["e1000"], "ubuntu64Guest"),
    ("CentOS__centos.ovf", "centos", 1, 1024, [5 * GIB], ["lsilogic"], ["e1000"], "centos64Guest"),
    ("DeleteHDTestdata__SasPvScsi__SasPvScsi.ovf", "Vm1", 1, 256, [8 * MIB, 8 * MIB], ["pvscsi", "lsisas1068"],
     ["pcnet32"], "rhel6Guest"),
    ("WindowsServer2008__Windows_Server_2008_R2_x64.ovf", "Windows Server 2008 R2 x64", 2, 2048, [40 * GIB],
     ["lsisas1068"], ["e1000"], "windows7Server64Guest"),
    ("simpleVmTemplate__descriptor.ovf", "vmBV8ly", 1, 0, [], [], [], None),
]  # fmt: skip


@pytest.mark.parametrize(("descriptor", "name", "vcpus", "memory", "disks", "models", "nics", "guest"), FACTS)
def test_sample_facts(descriptor, name, vcpus, memory, disks, models, nics, guest) -> None:
    vm = next(vm for vm in vms_of(descriptor) if vm.name == name)
    assert vm.cpu.vcpus == vcpus
    assert vm.memory_mib == memory
    assert [d.capacity_bytes for d in vm.disks] == disks
    assert [d.controller.model for d in vm.disks] == models
    assert [n.model for n in vm.nics] == nics
    assert vm.guest_id == guest
