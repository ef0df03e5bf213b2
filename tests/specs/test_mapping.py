"""The mapping table of issue 4, one concern per test, over hand-built planned VMs."""

from __future__ import annotations

import pytest

from converters.specs import SpecOptions, dump, vm_manifests
from converters.specs.firmware import vmware_serial
from core.errors import InputError
from core.inventory import CdRom, Disk, Firmware, Sharing
from core.plan import NetworkTarget
from tests.k8s_schema import validate_manifest
from tests.specs.builders import GIB, IDE0, SATA0, SCSI1, plan_of, planned, source_vm


def convert(vm=None, options: SpecOptions | None = None, **kw):
    p = planned(vm, **kw)
    manifests = vm_manifests(p, plan_of(p), options or SpecOptions())
    for obj in manifests.all():
        validate_manifest(obj)
    return manifests


def domain(manifests):
    return manifests.virtual_machine["spec"]["template"]["spec"]["domain"]


def test_cpu_memory_machine():
    d = domain(convert())
    assert d["cpu"] == {"sockets": 2, "cores": 4, "threads": 1}
    assert d["memory"]["guest"] == "4096Mi"
    assert d["resources"]["requests"]["memory"] == "4096Mi"
    assert d["machine"]["type"] == "q35"


def test_bios_firmware_identity():
    fw = domain(convert())["firmware"]
    assert fw["bootloader"] == {"bios": {}}
    assert fw["uuid"] == "4231a8c1-2b3c-4d5e-8f90-a1b2c3d4e5f6"
    assert fw["serial"] == "VMware-42 31 a8 c1 2b 3c 4d 5e-8f 90 a1 b2 c3 d4 e5 f6"
    assert "features" not in domain(convert())


def test_vmware_serial_form():
    assert vmware_serial("00000000-0000-0000-0000-0000000000ff").endswith("-00 00 00 00 00 00 00 ff")


@pytest.mark.parametrize("secure", [True, False])
def test_efi_secure_boot_and_smm(secure):
    d = domain(convert(source_vm(firmware=Firmware.EFI, secure_boot=secure)))
    assert d["firmware"]["bootloader"] == {"efi": {"secureBoot": secure}}
    assert (d.get("features") == {"smm": {"enabled": True}}) is secure


def test_vtpm_persistent():
    assert domain(convert(source_vm(vtpm=True)))["devices"]["tpm"] == {"persistent": True}
    assert "tpm" not in domain(convert())["devices"]


def test_volumes_are_claims_one_per_disk():
    m = convert()
    spec = m.virtual_machine["spec"]["template"]["spec"]
    assert spec["volumes"] == [
        {"name": "disk-0", "persistentVolumeClaim": {"claimName": "web-01-disk-0"}},
        {"name": "disk-1", "persistentVolumeClaim": {"claimName": "web-01-disk-1"}},
    ]
    assert [v["kind"] for v in m.volumes] == ["PersistentVolumeClaim"] * 2
    assert m.volumes[0]["spec"]["storageClassName"] == "fast"
    assert m.volumes[0]["metadata"]["annotations"]["migrator.io/source-disk"] == "Hard disk 1"
    assert m.disk_claim_names == {"Hard disk 1": "web-01-disk-0", "Hard disk 2": "web-01-disk-1"}


def test_pvc_sizes_leave_room_for_the_file_system():
    pvc = convert().volumes[1]
    assert pvc["spec"]["volumeMode"] == "Filesystem"
    # 5 GiB / (1 - 0.055), rounded up to MiB
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5418Mi"
    block = convert(options=SpecOptions(volume_mode="Block")).volumes[1]
    assert block["spec"]["resources"]["requests"]["storage"] == "5Gi"


def test_datavolumes_behind_the_flag():
    m = convert(options=SpecOptions(use_datavolumes=True))
    spec = m.virtual_machine["spec"]["template"]["spec"]
    assert spec["volumes"][0] == {"name": "disk-0", "dataVolume": {"name": "web-01-disk-0"}}
    dv = m.volumes[0]
    assert (dv["apiVersion"], dv["kind"]) == ("cdi.kubevirt.io/v1beta1", "DataVolume")
    assert dv["spec"]["source"] == {"upload": {}}
    assert dv["spec"]["storage"]["resources"]["requests"]["storage"] == "20Gi"


def test_virtio_bus_for_a_virtio_ready_guest_and_boot_order():
    disks = domain(convert())["devices"]["disks"]
    assert disks[0] == {"name": "disk-0", "disk": {"bus": "virtio"}, "bootOrder": 1}
    assert disks[1] == {"name": "disk-1", "disk": {"bus": "virtio"}}


def test_closest_bus_when_not_virtio_ready():
    vm = source_vm(guest_id="windows2019srv_64Guest")
    vm.disks.append(Disk(label="Hard disk 3", capacity_bytes=GIB, controller=SATA0, unit_number=0))
    vm.disks.append(Disk(label="Hard disk 4", capacity_bytes=GIB, controller=IDE0, unit_number=1))
    disks = domain(convert(vm))["devices"]["disks"]
    assert [d["disk"]["bus"] for d in disks if "disk" in d] == ["scsi", "scsi", "sata", "sata"]
    # the IDE disk comes first in VMware's BIOS order: it is the boot disk
    assert [d.get("bootOrder") for d in disks if "disk" in d] == [None, None, None, 1]


def test_virtio_override_and_converted_flag():
    vm = source_vm(guest_id="windows2019srv_64Guest")
    assert domain(convert(vm, SpecOptions(virtio_ready=True)))["devices"]["disks"][0]["disk"]["bus"] == "virtio"
    vm = source_vm(guest_id="windows2019srv_64Guest", extra_config={"migrator.converted": "true"})
    assert domain(convert(vm))["devices"]["disks"][0]["disk"]["bus"] == "virtio"
    vm = source_vm(guest_id="rhel8_64Guest")
    assert domain(convert(vm, SpecOptions(virtio_ready=False)))["devices"]["disks"][0]["disk"]["bus"] == "scsi"


def test_boot_disk_from_bios_hdd_order():
    vm = source_vm(extra_config={"bios.hddOrder": "scsi0:1"})
    disks = domain(convert(vm))["devices"]["disks"]
    assert "bootOrder" not in disks[0]
    assert disks[1]["bootOrder"] == 1


def test_empty_cdrom_kept_without_a_volume():
    m = convert()
    disks = domain(m)["devices"]["disks"]
    assert disks[-1] == {"name": "cdrom-0", "cdrom": {"bus": "sata", "readonly": True}}
    assert "cdrom-0" not in [v["name"] for v in m.virtual_machine["spec"]["template"]["spec"]["volumes"]]


def test_iso_cdrom_recorded_in_an_annotation():
    vm = source_vm(cdroms=[CdRom(label="CD 1", controller=IDE0, unit_number=0, iso_file="[ds] isos/a.iso")])
    annotations = convert(vm).virtual_machine["metadata"]["annotations"]
    assert annotations["migrator.io/cdrom-0-source-iso"] == "[ds] isos/a.iso"


def test_shared_disks_shareable_cache_none_and_rwx():
    vm = source_vm()
    vm.disks.append(Disk(label="Quorum", capacity_bytes=GIB, controller=SCSI1, unit_number=0))
    vm.disks.append(
        Disk(
            label="MW",
            capacity_bytes=GIB,
            controller=vm.disks[0].controller,
            unit_number=2,
            sharing=Sharing.MULTI_WRITER,
        )
    )
    m = convert(vm)
    disks = domain(m)["devices"]["disks"]
    for entry in disks[2:4]:
        assert entry["shareable"] is True and entry["cache"] == "none"
    assert "shareable" not in disks[0]
    assert m.volumes[2]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert m.volumes[0]["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_nics_pod_multus_ignored():
    m = convert()
    spec = m.virtual_machine["spec"]["template"]["spec"]
    assert spec["domain"]["devices"]["interfaces"] == [
        {"name": "net-0", "model": "virtio", "macAddress": "00:50:56:aa:bb:01", "masquerade": {}},
        {"name": "net-1", "model": "virtio", "macAddress": "00:50:56:aa:bb:02", "bridge": {}},
    ]
    assert spec["networks"] == [
        {"name": "net-0", "pod": {}},
        {"name": "net-1", "multus": {"networkName": "storage-ns/storage-net"}},
    ]


def test_nic_compat_mode_and_auto_compat():
    iface = domain(convert(options=SpecOptions(nic_compat=True)))["devices"]["interfaces"][0]
    assert iface["model"] == "e1000e"
    windows = source_vm(guest_id="windows2019srv_64Guest")
    assert domain(convert(windows))["devices"]["interfaces"][0]["model"] == "e1000e"
    assert domain(convert(windows, SpecOptions(nic_compat=False)))["devices"]["interfaces"][0]["model"] == "virtio"


def test_two_pod_nics_refused():
    with pytest.raises(InputError, match="more than one NIC"):
        convert(nic_targets=[(NetworkTarget.POD, None)] * 3)


def test_no_nic_no_automatic_pod_interface():
    devices = domain(convert(nic_targets=[(NetworkTarget.IGNORE, None)] * 3))["devices"]
    assert devices["interfaces"] == [] and devices["autoattachPodInterface"] is False


def test_metadata_identity_and_run_strategy():
    vm = convert().virtual_machine
    assert vm["metadata"]["namespace"] == "migrated"
    assert vm["metadata"]["labels"] == {
        "migrator.io/plan": "wave-1",
        "migrator.io/vm": "web-01",
        "migrator.io/source-moref": "vm-42",
    }
    assert vm["metadata"]["annotations"] == {
        "migrator.io/source": "vsphere://admin@vc.example.com/DC0",
        "migrator.io/source-name": "web-01",
        "migrator.io/plan": "wave-1",
        "migrator.io/source-moref": "vm-42",
        "migrator.io/source-instance-uuid": "5012a3b4-0000-1111-2222-333344445555",
        "migrator.io/source-bios-uuid": "4231a8c1-2b3c-4d5e-8f90-a1b2c3d4e5f6",
    }
    assert vm["spec"]["runStrategy"] == "Halted"
    assert vm["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 180


def test_deterministic_bytes():
    first = [dump(o) for o in convert().all()]
    second = [dump(o) for o in convert().all()]
    assert first == second
    assert "creationTimestamp" not in "".join(first)


def test_strict_schema_check_catches_a_typo():
    from tests.k8s_schema import SchemaError, validate_kubevirt

    vm = convert().virtual_machine
    vm["spec"]["template"]["spec"]["domain"]["devices"]["disks"][0]["disk"]["buss"] = "virtio"
    with pytest.raises(SchemaError, match="buss"):
        validate_kubevirt(vm, "v1.VirtualMachine")
    vm = convert().virtual_machine
    vm["spec"]["runStrategy"] = 3
    with pytest.raises(SchemaError, match="runStrategy"):
        validate_kubevirt(vm, "v1.VirtualMachine")


def test_strict_check_of_volumes_catches_a_typo():
    from tests.k8s_schema import SchemaError

    pvc = convert().volumes[0]
    pvc["spec"]["storageClass"] = "fast"
    with pytest.raises(SchemaError):
        validate_manifest(pvc)
    dv = convert(options=SpecOptions(use_datavolumes=True)).volumes[0]
    dv["spec"]["storage"]["size"] = "1Gi"
    with pytest.raises(SchemaError, match="spec.storage.size"):
        validate_manifest(dv)
    dv = convert(options=SpecOptions(use_datavolumes=True)).volumes[0]
    dv["spec"]["source"] = {"upload": {}, "blank": {}}
    with pytest.raises(SchemaError, match="exactly one source"):
        validate_manifest(dv)


@pytest.mark.parametrize(
    ("guest_id", "ready"),
    [
        ("rhel8_64Guest", True),
        ("rhel7-64", True),  # the .vmx spelling
        ("rhel5_64Guest", False),
        ("centos64Guest", False),  # CentOS 4/5 64-bit, not CentOS 6.4
        ("centos7_64Guest", True),
        ("debian10_64Guest", True),
        ("ubuntu64Guest", True),
        ("sles15_64Guest", True),
        ("sles64Guest", False),
        ("other4xLinux64Guest", True),
        ("other24xLinuxGuest", False),
        ("windows2019srv_64Guest", False),
        ("otherGuest", False),
        (None, False),
    ],
)
def test_virtio_readiness_from_guest_id(guest_id, ready):
    from converters.specs.guest import guest_virtio_ready

    assert guest_virtio_ready(source_vm(guest_id=guest_id)) is ready
