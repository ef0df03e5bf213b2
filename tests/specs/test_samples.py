"""The VMX and OVF samples of ../shared/samples through the real source parsers, to validated manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from converters.specs import SpecOptions, dump, vm_manifests
from migrator.convert.plans import one_vm_plan
from migrator.sources import open_source
from tests.conftest import SAMPLES_OVF, SAMPLES_VMX
from tests.k8s_schema import validate_manifest


def _manifests_for_every_vm(spec: str, options: SpecOptions) -> list:
    source = open_source(spec)
    try:
        inventory = source.inventory()
    finally:
        source.close()
    assert inventory.vms, spec
    out = []
    for vm in inventory.vms:
        plan = one_vm_plan(inventory, vm.name, source=spec, namespace="samples")
        out.append((vm, vm_manifests(plan.vm(vm.name), plan, options)))
    return out


@pytest.mark.parametrize("path", sorted(SAMPLES_VMX.glob("*.vmx")), ids=lambda p: p.name)
@pytest.mark.parametrize("datavolumes", [False, True])
def test_vmx_samples(path: Path, datavolumes: bool) -> None:
    pytest.importorskip("migrator.sources.vmx")
    for vm, manifests in _manifests_for_every_vm(f"vmx:{path}", SpecOptions(use_datavolumes=datavolumes)):
        for obj in manifests.all():
            validate_manifest(obj)
        domain = manifests.virtual_machine["spec"]["template"]["spec"]["domain"]
        disks = [d for d in domain["devices"]["disks"] if "disk" in d]
        assert len(disks) == len(vm.disks) == len(manifests.volumes)
        assert sum(1 for d in disks if d.get("bootOrder") == 1) == 1
        assert len([d for d in domain["devices"]["disks"] if "cdrom" in d]) == len(vm.cdroms)
        assert domain["memory"]["guest"] == f"{vm.memory_mib}Mi"
        # same input, same bytes
        assert dump(manifests.virtual_machine) == dump(
            _manifests_for_every_vm(f"vmx:{path}", SpecOptions(use_datavolumes=datavolumes))[0][1].virtual_machine
        )


def test_vmx_sample_21_disks_mapping() -> None:
    pytest.importorskip("migrator.sources.vmx")
    [(vm, manifests)] = _manifests_for_every_vm(f"vmx:{SAMPLES_VMX / 'test-i-vmx-1.vmx'}", SpecOptions())
    domain = manifests.virtual_machine["spec"]["template"]["spec"]["domain"]
    disks = domain["devices"]["disks"]
    assert [d["disk"]["bus"] for d in disks if "disk" in d] == ["virtio"] * 21  # rhel6: virtio-ready
    assert disks[0]["bootOrder"] == 1  # scsi0:0
    assert disks[-1] == {"name": "cdrom-0", "cdrom": {"bus": "sata", "readonly": True}}
    assert domain["devices"]["interfaces"][0]["macAddress"] == "00:0c:29:36:ef:31"


@pytest.mark.parametrize("path", sorted(SAMPLES_OVF.glob("*.ovf")), ids=lambda p: p.name)
def test_ovf_samples(path: Path) -> None:
    pytest.importorskip("migrator.sources.ovf")
    for vm, manifests in _manifests_for_every_vm(f"ovf:{path}", SpecOptions()):
        for obj in manifests.all():
            validate_manifest(obj)
        domain = manifests.virtual_machine["spec"]["template"]["spec"]["domain"]
        assert domain["cpu"]["sockets"] * domain["cpu"]["cores"] == vm.cpu.vcpus
        assert len([d for d in domain["devices"]["disks"] if "disk" in d]) == len(vm.disks)
