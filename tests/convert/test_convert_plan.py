"""`migrator convert --plan`: real VMDKs, real qemu-img, the real CLI; gate, dry run, resume."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from core.inventory import VM, Controller, ControllerKind, Cpu, Disk, Nic
from core.plan import (
    Concern,
    NetworkTarget,
    Plan,
    PlannedDisk,
    PlannedNic,
    PlannedVM,
    Severity,
)
from tests.convert.helpers import MIB, images_equal, load_yaml, make_vmdk, migrator, write_plan, write_vmx
from tests.k8s_schema import validate_manifest

SCSI0 = Controller(kind=ControllerKind.SCSI, bus_number=0, model="pvscsi")


def planned_vm(tmp: Path, concerns: list[Concern] | None = None) -> tuple[Plan, list[Path]]:
    vmdks = [make_vmdk(tmp / "app.vmdk"), make_vmdk(tmp / "app_1.vmdk", "4M", 0x33, "twoGbMaxExtentSparse")]
    vmx = write_vmx(tmp / "app.vmx", "app", [p.name for p in vmdks])
    disks = [
        Disk(
            label=f"Hard disk {i + 1}", capacity_bytes=size * MIB, controller=SCSI0, unit_number=i, backing_file=p.name
        )
        for i, (p, size) in enumerate(zip(vmdks, (8, 4), strict=True))
    ]
    vm = VM(
        name="app",
        source="vmx",
        cpu=Cpu(2, 1),
        memory_mib=256,
        disks=disks,
        guest_id="debian10_64Guest",
        bios_uuid="4231a8c1-2b3c-4d5e-8f90-a1b2c3d4e5f6",
        nics=[Nic(label="ethernet0", model="vmxnet3", mac="00:50:56:01:02:03", network="VM Network")],
    )
    planned = PlannedVM(
        source_name="app",
        target_name="app",
        vm=vm,
        disks=[
            PlannedDisk(
                label=d.label,
                claim_name=f"app-disk-{i}",
                storage_class=None,
                capacity_bytes=d.capacity_bytes,
                transfer_bytes=d.capacity_bytes,
                source_file=d.backing_file,
                datastore=None,
            )
            for i, d in enumerate(disks)
        ],
        nics=[
            PlannedNic(
                label="ethernet0", mac="00:50:56:01:02:03", source_network="VM Network", target=NetworkTarget.POD
            )
        ],
        concerns=concerns or [],
    )
    return Plan(name="p1", source=f"vmx:{vmx}", target_namespace="apps", vms=[planned]), vmdks


def test_convert_from_plan_writes_images_and_manifests_and_resumes(tmp_path: Path) -> None:
    plan, vmdks = planned_vm(tmp_path)
    plan_file = write_plan(tmp_path / "plan.yaml", plan)
    out = tmp_path / "out"
    first = migrator("convert", "--plan", str(plan_file), "--vm", "app", "--output-dir", str(out))
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "app-disk-0-pvc.yaml",
        "app-disk-0.img",
        "app-disk-1-pvc.yaml",
        "app-disk-1.img",
        "app-vm.yaml",
    ]
    for i, vmdk in enumerate(vmdks):
        assert images_equal(vmdk, out / f"app-disk-{i}.img")
    vm = load_yaml(out / "app-vm.yaml")
    validate_manifest(vm)
    assert vm["metadata"]["namespace"] == "apps"
    claims = [v["persistentVolumeClaim"]["claimName"] for v in vm["spec"]["template"]["spec"]["volumes"]]
    assert claims == ["app-disk-0", "app-disk-1"]
    for claim in claims:
        validate_manifest(load_yaml(out / f"{claim}-pvc.yaml"))

    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir() if p.is_file()}
    second = migrator("convert", "--plan", str(plan_file), "--vm", "app", "--output-dir", str(out))
    assert second.returncode == 0, second.stderr
    assert second.stderr.count("already converted, skipped") == 2
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir() if p.is_file()}
    assert after == before  # no disk rewritten, manifests byte-identical


def test_interrupted_disk_is_redone(tmp_path: Path) -> None:
    plan, vmdks = planned_vm(tmp_path)
    plan_file = write_plan(tmp_path / "plan.yaml", plan)
    out = tmp_path / "out"
    assert migrator("convert", "--plan", str(plan_file), "--vm", "app", "--output-dir", str(out)).returncode == 0
    # a disk cut short (as after a kill): the state no longer matches it, so it is converted again
    (out / "app-disk-1.img").write_bytes(b"partial")
    again = migrator("convert", "--plan", str(plan_file), "--vm", "app", "--output-dir", str(out))
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("already converted, skipped") == 1
    assert images_equal(vmdks[1], out / "app-disk-1.img")


def convert_app(plan_file: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`migrator convert` of the plan's VM "app" into ``out``."""
    return migrator("convert", "--plan", str(plan_file), "--vm", "app", "--output-dir", str(out), *extra)


def test_qcow2_format_and_datavolumes(tmp_path: Path) -> None:
    plan, vmdks = planned_vm(tmp_path)
    plan_file = write_plan(tmp_path / "plan.yaml", plan)
    out = tmp_path / "out"
    result = convert_app(plan_file, out, "--format", "qcow2", "--datavolumes", "--progress", "json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {e["disk"] for e in events if e["state"] == "done"} == {"app-disk-0", "app-disk-1"}
    assert images_equal(vmdks[0], out / "app-disk-0.qcow2")
    dv = load_yaml(out / "app-disk-0-dv.yaml")
    validate_manifest(dv)
    vm = load_yaml(out / "app-vm.yaml")
    assert vm["spec"]["template"]["spec"]["volumes"][0]["dataVolume"] == {"name": "app-disk-0"}


def test_blocked_vm_refused_unless_every_concern_forced(tmp_path: Path) -> None:
    concerns = [
        Concern("rdm-disk", Severity.CRITICAL, "RDM disks cannot be copied."),
        Concern("passthrough-device", Severity.CRITICAL, "PCI passthrough."),
        Concern("cbt-disabled", Severity.WARNING, "CBT is off."),
    ]
    plan, vmdks = planned_vm(tmp_path, concerns)
    plan_file = write_plan(tmp_path / "plan.yaml", plan)
    out = tmp_path / "out"
    refused = migrator("convert", "--plan", str(plan_file), "--vm", "app", "--output-dir", str(out))
    assert refused.returncode == 3
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "rdm-disk" in lines[0] and "passthrough-device" in lines[0]
    assert not out.exists()
    partly = convert_app(plan_file, out, "--force", "rdm-disk")
    assert partly.returncode == 3 and "passthrough-device" in partly.stderr and "rdm-disk," not in partly.stderr
    forced = convert_app(plan_file, out, "--force", "rdm-disk", "--force", "passthrough-device")
    assert forced.returncode == 0, forced.stderr
    assert images_equal(vmdks[0], out / "app-disk-0.img")


def test_dry_run_prints_and_writes_nothing(tmp_path: Path) -> None:
    plan, _ = planned_vm(tmp_path)
    plan_file = write_plan(tmp_path / "plan.yaml", plan)
    out = tmp_path / "out"
    result = migrator("convert", "--plan", str(plan_file), "--vm", "app", "--output-dir", str(out), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert not out.exists()
    assert "kind: VirtualMachine" in result.stdout and "kind: PersistentVolumeClaim" in result.stdout
    assert "app-disk-0.img" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vm", "nope"], "not in plan"),
        (["--vm", "app", "--format", "vhd"], "Invalid value"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    plan, _ = planned_vm(tmp_path)
    plan_file = write_plan(tmp_path / "plan.yaml", plan)
    result = migrator("convert", "--plan", str(plan_file), "--output-dir", str(tmp_path / "o"), *args)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_missing_source_disk_is_one_line(tmp_path: Path) -> None:
    plan, vmdks = planned_vm(tmp_path)
    vmdks[1].unlink()
    plan_file = write_plan(tmp_path / "plan.yaml", plan)
    result = migrator("convert", "--plan", str(plan_file), "--vm", "app", "--output-dir", str(tmp_path / "o"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "app_1.vmdk" in result.stderr, result.stderr
