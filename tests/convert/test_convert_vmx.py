"""Acceptance: `migrator convert --source vmx:PATH --vm NAME --output-dir DIR`, run twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.convert.helpers import images_equal, load_yaml, make_vmdk, migrator, write_vmx
from tests.k8s_schema import validate_manifest

pytest.importorskip("migrator.sources.vmx")


def test_vmx_source_end_to_end_twice(tmp_path: Path) -> None:
    vmdk = make_vmdk(tmp_path / "tiny.vmdk")
    vmx = write_vmx(tmp_path / "tiny.vmx", "tiny", ["tiny.vmdk"])
    out = tmp_path / "out"
    first = migrator("convert", "--source", f"vmx:{vmx}", "--vm", "tiny", "--output-dir", str(out))
    assert first.returncode == 0, first.stderr
    yamls = sorted(p.name for p in out.glob("*.yaml"))
    images = sorted(p.name for p in out.glob("*.img"))
    assert yamls == ["tiny-disk-0-pvc.yaml", "tiny-vm.yaml"] and images == ["tiny-disk-0.img"]
    assert images_equal(vmdk, out / "tiny-disk-0.img")
    vm = load_yaml(out / "tiny-vm.yaml")
    validate_manifest(vm)
    validate_manifest(load_yaml(out / "tiny-disk-0-pvc.yaml"))
    domain = vm["spec"]["template"]["spec"]["domain"]
    assert domain["cpu"] == {"sockets": 1, "cores": 2, "threads": 1}
    assert domain["devices"]["interfaces"][0]["macAddress"] == "00:50:56:01:02:03"
    assert domain["firmware"]["uuid"] == "4231a8c1-2b3c-4d5e-8f90-a1b2c3d4e5f6"

    image = out / "tiny-disk-0.img"
    stamp = image.stat().st_mtime_ns
    manifests = {p.name: p.read_bytes() for p in out.glob("*.yaml")}
    second = migrator("convert", "--source", f"vmx:{vmx}", "--vm", "tiny", "--output-dir", str(out))
    assert second.returncode == 0, second.stderr
    assert "already converted, skipped" in second.stderr
    assert image.stat().st_mtime_ns == stamp
    assert {p.name: p.read_bytes() for p in out.glob("*.yaml")} == manifests


def test_vmx_dry_run_writes_nothing(tmp_path: Path) -> None:
    make_vmdk(tmp_path / "tiny.vmdk")
    vmx = write_vmx(tmp_path / "tiny.vmx", "tiny", ["tiny.vmdk"])
    out = tmp_path / "out"
    result = migrator("convert", "--source", f"vmx:{vmx}", "--vm", "tiny", "--output-dir", str(out), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert not out.exists()
    assert "kind: VirtualMachine" in result.stdout


def test_unknown_vm_in_source(tmp_path: Path) -> None:
    make_vmdk(tmp_path / "tiny.vmdk")
    vmx = write_vmx(tmp_path / "tiny.vmx", "tiny", ["tiny.vmdk"])
    result = migrator("convert", "--source", f"vmx:{vmx}", "--vm", "other", "--output-dir", str(tmp_path / "o"))
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_plan_cli_then_convert_plan(tmp_path: Path) -> None:
    """The user's road: `migrator plan` with a network map, then `convert --plan`."""
    vmdk = make_vmdk(tmp_path / "tiny.vmdk")
    vmx = write_vmx(tmp_path / "tiny.vmx", "tiny", ["tiny.vmdk"])
    plan_file = tmp_path / "plan.yaml"
    planned = migrator(
        "plan",
        "--source",
        f"vmx:{vmx}",
        "--network",
        "VM Network=multus:net-ns/vlan10",
        "--namespace",
        "wave1",
        "--output-file",
        str(plan_file),
    )
    assert planned.returncode == 0, planned.stderr
    out = tmp_path / "out"
    result = migrator("convert", "--plan", str(plan_file), "--vm", "tiny", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    vm = load_yaml(out / "tiny-vm.yaml")
    validate_manifest(vm)
    spec = vm["spec"]["template"]["spec"]
    assert vm["metadata"]["namespace"] == "wave1"
    assert spec["networks"] == [{"name": spec["networks"][0]["name"], "multus": {"networkName": "net-ns/vlan10"}}]
    assert spec["domain"]["devices"]["interfaces"][0]["bridge"] == {}
    [claim] = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]]
    assert images_equal(vmdk, out / f"{claim}.img")
