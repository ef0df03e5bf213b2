"""The VMX source: the shared samples, VMDK descriptors made by qemu-img, snapshots, bad input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from core.errors import InputError, NotFoundError
from core.inventory import ControllerKind, DiskMode, Firmware, PowerState, Sharing
from migrator.sources import open_source
from migrator.sources.vmx import parse_vmx, read_vmdk, vmx_uuid
from tests.conftest import SAMPLES_VMX
from tests.planning.cli import assert_one_line_error, run_migrator

SAMPLE_1 = SAMPLES_VMX / "test-i-vmx-1.vmx"
SAMPLE_2 = SAMPLES_VMX / "test-i-vmx-2.vmx"


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def only_vm(spec: str):
    inventory = open_source(spec).inventory()
    assert len(inventory.vms) == 1
    return inventory.vms[0]


def test_sample_21_disks() -> None:
    vm = only_vm(f"vmx:{SAMPLE_1}")
    assert vm.name == "BZ1308535_21disks"
    assert vm.source == "vmx"
    assert vm.memory_mib == 2048
    assert (vm.cpu.sockets, vm.cpu.cores_per_socket) == (1, 1)
    assert len(vm.disks) == 21
    assert [c.model for c in vm.controllers if c.kind is ControllerKind.SCSI] == ["pvscsi", "pvscsi"]
    # scsi0:7 is the controller's own id: units jump from 6 to 8
    assert [d.unit_number for d in vm.disks if d.controller.bus_number == 0][6:8] == [6, 8]
    assert sum(1 for d in vm.disks if d.controller.bus_number == 1) == 6
    assert vm.disks[0].backing_file == str((SAMPLES_VMX / "BZ1308535_21disks.vmdk").resolve())
    assert all(d.capacity_bytes == 0 for d in vm.disks)  # the .vmdk files are not beside the sample
    assert vm.nics[0].model == "vmxnet3"
    assert vm.nics[0].mac == "00:0c:29:36:ef:31"
    assert vm.nics[0].network == "VM Network"
    assert vm.cdroms[0].controller.kind is ControllerKind.IDE
    assert vm.cdroms[0].iso_file.endswith("RHEL-7.1-20150219.1-Server-x86_64-boot.iso")
    assert vm.guest_id == "rhel6-64"
    assert vm.bios_uuid == "564d96af-e646-bd86-5c4d-654e7736ef31"
    assert vm.instance_uuid == "5231cbfc-c13f-9632-83c0-bb706c905cfd"
    assert vm.firmware is Firmware.BIOS


def test_sample_fedora() -> None:
    vm = only_vm(f"vmx:{SAMPLE_2}")
    assert vm.name == "Fedora 20"
    assert vm.memory_mib == 2048
    assert len(vm.disks) == 1 and vm.disks[0].controller.model == "pvscsi"
    assert vm.cpu.affinity == []  # sched.cpu.affinity = "all" is no affinity
    assert vm.cdroms[0].controller.kind is ControllerKind.SATA
    assert vm.cdroms[0].start_connected is False
    assert vm.nics[0].mac == "00:50:56:9b:5f:0d"  # addressType vpx → generatedAddress
    assert vm.guest_id == "rhel7-64"


def test_escapes_and_case() -> None:
    entries = parse_vmx('displayName = "a|22b|7Cc"\nMemSize = "64"\n# comment\n\nflag = TRUE\n')
    assert entries == {"displayname": 'a"b|c', "memsize": "64", "flag": "TRUE"}
    assert vmx_uuid("56 4d 96 af e6 46 bd 86-5c 4d 65 4e 77 36 ef 31") == "564d96af-e646-bd86-5c4d-654e7736ef31"


@pytest.fixture
def vm_dir(tmp_path: Path) -> Path:
    """A VM folder with real VMDKs made by qemu-img, in three layouts."""
    qemu_img("create", "-f", "vmdk", str(tmp_path / "sparse.vmdk"), "64M")
    qemu_img("create", "-f", "vmdk", "-o", "subformat=monolithicFlat", str(tmp_path / "flat.vmdk"), "10M")
    qemu_img("create", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", str(tmp_path / "split.vmdk"), "3G")
    qemu_img("create", "-f", "vmdk", "-o", "subformat=streamOptimized", str(tmp_path / "stream.vmdk"), "32M")
    (tmp_path / "big.vmx").write_text(
        "\n".join(
            [
                'displayName = "big vm"',
                'memsize = "4096"',
                'numvcpus = "8"',
                'cpuid.coresPerSocket = "4"',
                'firmware = "efi"',
                'uefi.secureBoot.enabled = "TRUE"',
                'vtpm.present = "TRUE"',
                'ctkEnabled = "TRUE"',
                'disk.EnableUUID = "TRUE"',
                'sched.cpu.affinity = "0,1"',
                'numa.nodeAffinity = "1"',
                'vcpu.hotadd = "TRUE"',
                'mem.hotadd = "TRUE"',
                'usb.present = "TRUE"',
                'usb_xhci.present = "TRUE"',
                'pciPassthru0.present = "TRUE"',
                'pciPassthru0.vgpu = "grid_p40-2q"',
                'scsi0.present = "TRUE"',
                'scsi0.virtualDev = "lsisas1068"',
                'scsi0:0.present = "TRUE"',
                'scsi0:0.fileName = "sparse.vmdk"',
                'scsi0:0.ctkEnabled = "FALSE"',
                'scsi0:1.present = "TRUE"',
                'scsi0:1.fileName = "flat.vmdk"',
                'scsi0:1.mode = "independent-persistent"',
                'scsi0:1.sharing = "multi-writer"',
                'sata0.present = "TRUE"',
                'sata0:0.present = "TRUE"',
                'sata0:0.fileName = "split.vmdk"',
                'nvme0.present = "TRUE"',
                'nvme0:0.present = "TRUE"',
                'nvme0:0.fileName = "stream.vmdk"',
                'ide1:0.present = "TRUE"',
                'ide1:0.deviceType = "atapi-cdrom"',
                'ide1:0.fileName = "auto detect"',
                'ethernet0.present = "TRUE"',
                'ethernet0.virtualDev = "e1000e"',
                'ethernet0.addressType = "static"',
                'ethernet0.address = "00:50:56:AA:BB:CC"',
                'ethernet0.networkName = "prod"',
                'ethernet1.present = "TRUE"',
                'ethernet1.networkName = "backup"',
                'ethernet1.generatedAddress = "00:0c:29:00:00:01"',
                'ethernet2.present = "FALSE"',
                'checkpoint.vmState = "big.vmss"',
            ]
        )
        + "\n"
    )
    (tmp_path / "big.vmsd").write_text(
        'snapshot.numSnapshots = "2"\nsnapshot0.uid = "1"\nsnapshot0.displayName = "before upgrade"\n'
        'snapshot1.uid = "2"\nsnapshot1.parent = "1"\nsnapshot1.displayName = "after"\n'
    )
    return tmp_path


def test_vmdk_descriptors_give_capacity_and_allocation(vm_dir: Path) -> None:
    vm = only_vm(f"vmx:{vm_dir / 'big.vmx'}")
    by_file = {Path(d.backing_file).name: d for d in vm.disks}
    assert by_file["sparse.vmdk"].capacity_bytes == 64 * 2**20
    assert by_file["flat.vmdk"].capacity_bytes == 10 * 2**20
    assert by_file["split.vmdk"].capacity_bytes == 3 * 2**30
    assert by_file["stream.vmdk"].capacity_bytes == 32 * 2**20
    # sparse files hold far less than their capacity; the split one has two extent files
    assert 0 < by_file["sparse.vmdk"].allocated_bytes < 64 * 2**20
    assert 0 < by_file["split.vmdk"].allocated_bytes < 2**30
    assert len(read_vmdk(vm_dir / "split.vmdk").extents) == 2
    assert by_file["flat.vmdk"].mode is DiskMode.INDEPENDENT_PERSISTENT
    assert by_file["flat.vmdk"].sharing is Sharing.MULTI_WRITER
    assert by_file["sparse.vmdk"].cbt_enabled is False
    assert by_file["sparse.vmdk"].controller.model == "lsisas1068"
    assert by_file["split.vmdk"].controller.kind is ControllerKind.SATA
    assert by_file["stream.vmdk"].controller.kind is ControllerKind.NVME


def test_vm_level_facts(vm_dir: Path) -> None:
    vm = only_vm(f"vmx:{vm_dir / 'big.vmx'}")
    assert (vm.cpu.sockets, vm.cpu.cores_per_socket, vm.cpu.vcpus) == (2, 4, 8)
    assert vm.firmware is Firmware.EFI and vm.secure_boot and vm.vtpm
    assert vm.cbt_enabled is True and vm.disk_enable_uuid is True
    assert vm.cpu.affinity == [0, 1] and vm.cpu.numa_affinity == [1]
    assert vm.cpu.hot_add and vm.memory_hot_add
    assert vm.usb_controllers == ["usb", "usb_xhci"]
    assert [(p.kind, p.detail) for p in vm.passthrough] == [("vgpu", "grid_p40-2q")]
    assert [(n.model, n.mac, n.network) for n in vm.nics] == [
        ("e1000e", "00:50:56:aa:bb:cc", "prod"),
        ("e1000", "00:0c:29:00:00:01", "backup"),
    ]
    assert len(vm.cdroms) == 1 and vm.cdroms[0].iso_file is None
    assert [(s.name, s.children) for s in vm.snapshots] == [("before upgrade", 1), ("after", 0)]
    assert vm.power_state is PowerState.SUSPENDED


def test_delta_disk_without_snapshots_needs_consolidation(tmp_path: Path) -> None:
    qemu_img("create", "-f", "vmdk", str(tmp_path / "d-000001.vmdk"), "1M")
    (tmp_path / "d.vmx").write_text(
        'memsize = "128"\nscsi0.present = "TRUE"\nscsi0:0.present = "TRUE"\nscsi0:0.fileName = "d-000001.vmdk"\n'
    )
    vm = only_vm(f"vmx:{tmp_path / 'd.vmx'}")
    assert vm.consolidation_needed and not vm.snapshots


def test_malformed_vmx_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.vmx"
    bad.write_text('memsize = "64"\nthis is not a vmx line\n')
    with pytest.raises(InputError, match="line 2"):
        open_source(f"vmx:{bad}").inventory()
    binary = tmp_path / "bin.vmx"
    binary.write_bytes(b"\x00\x01\x02KDMV")
    with pytest.raises(InputError, match="binary"):
        open_source(f"vmx:{binary}").inventory()
    with pytest.raises(NotFoundError):
        open_source(f"vmx:{tmp_path / 'missing.vmx'}")


def test_malformed_vmx_through_cli(tmp_path: Path) -> None:
    bad = tmp_path / "bad.vmx"
    bad.write_text('memsize = "64"\n{{ not vmx }}\n')
    result = run_migrator("plan", "--source", f"vmx:{bad}", "-o", "json", cwd=tmp_path)
    assert_one_line_error(result, "line 2")
    assert result.returncode == 2
    missing = run_migrator("plan", "--source", f"vmx:{tmp_path / 'nope.vmx'}", cwd=tmp_path)
    assert_one_line_error(missing, "does not exist")
    assert not (tmp_path / "plan.yaml").exists()


def test_sample_plans_through_cli(tmp_path: Path) -> None:
    shutil.copy(SAMPLE_2, tmp_path / "fedora.vmx")
    qemu_img("create", "-f", "vmdk", str(tmp_path / "Fedora-20.vmdk"), "20M")
    result = run_migrator("plan", "--source", f"vmx:{tmp_path / 'fedora.vmx'}", "-o", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "fedora-20" in result.stdout and (tmp_path / "plan.yaml").exists()


def test_rdm_descriptor_and_encryption(tmp_path: Path) -> None:
    (tmp_path / "lun.vmdk").write_text(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
        'createType="vmfsPassthroughRawDeviceMap"\n\n'
        'RW 2097152 VMFSRDM "lun-rdmp.vmdk"\n\nddb.uuid = "60 00 C2 9a"\n'
    )
    (tmp_path / "r.vmx").write_text(
        'memsize = "256"\nscsi0.present = "TRUE"\nscsi0.sharedBus = "physical"\nscsi0:0.present = "TRUE"\n'
        'scsi0:0.fileName = "lun.vmdk"\nencryption.keySafe = "vmware:key/list/(pair/(null/vmware-key))"\n'
        'ehci.present = "TRUE"\npciPassthru3.present = "TRUE"\npciPassthru3.id = "00000:004:00.0"\n'
    )
    vm = only_vm(f"vmx:{tmp_path / 'r.vmx'}")
    (disk,) = vm.disks
    assert disk.rdm and disk.rdm_compatibility == "physicalMode"
    assert disk.capacity_bytes == 2097152 * 512 and disk.uuid == "60 00 C2 9a"
    assert disk.allocated_bytes is None  # the mapped LUN file is not here
    assert disk.controller.shared_bus == "physicalSharing"
    assert vm.encrypted and vm.usb_controllers == ["usb.ehci"]
    assert [(p.label, p.kind, p.detail) for p in vm.passthrough] == [("PCI device 3", "pci", "00000:004:00.0")]
