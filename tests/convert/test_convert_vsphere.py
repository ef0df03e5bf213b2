"""Acceptance on the simulator: a VM whose datastore holds a real VMDK, converted over HTTP, twice."""

from __future__ import annotations

import subprocess
from pathlib import Path

from migrator import simulator
from migrator.simulator import seed
from tests.convert.helpers import images_equal, load_yaml, make_vmdk, migrator
from tests.k8s_schema import validate_manifest

ENV = "MIGRATOR_VSPHERE_PASSWORD"


def _convert(sim: simulator.Simulator, vm: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return migrator(
        "convert",
        "--source",
        sim.source_url(),
        "--insecure",
        "--vm",
        vm,
        "--output-dir",
        str(out),
        *extra,
        env={ENV: sim.password},
    )


def test_vsphere_vm_converted_end_to_end_twice(fresh_vcsim: simulator.Simulator, tmp_path: Path) -> None:
    sparse = make_vmdk(tmp_path / "sparse.vmdk", "8M", 0x5A)
    seed.attach_disk_image(fresh_vcsim, "DC0_H0_VM0", [sparse], mac="00:50:56:12:34:56", power_off=True)
    raw = tmp_path / "flat.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(raw), "4M"], check=True)
    subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x77 1M 1M", str(raw)], check=True, capture_output=True)
    flat = tmp_path / "flat.vmdk"
    subprocess.run(
        ["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=monolithicFlat", str(raw), str(flat)], check=True
    )
    seed.attach_disk_image(fresh_vcsim, "DC0_H0_VM1", [flat, tmp_path / "flat-flat.vmdk"], power_off=True)

    out = tmp_path / "out"
    for vm, source_disk in (("DC0_H0_VM0", sparse), ("DC0_H0_VM1", raw)):
        first = _convert(fresh_vcsim, vm, out)
        assert first.returncode == 0, first.stderr
        target = vm.lower().replace("_", "-")
        [image] = out.glob(f"{target}-disk-0.img")
        assert images_equal(source_disk, image)
        manifest = load_yaml(out / f"{target}-vm.yaml")
        validate_manifest(manifest)
        validate_manifest(load_yaml(out / f"{target}-disk-0-pvc.yaml"))
        volumes = manifest["spec"]["template"]["spec"]["volumes"]
        assert volumes[0]["persistentVolumeClaim"]["claimName"] == f"{target}-disk-0"
        assert manifest["metadata"]["annotations"]["migrator.io/source-moref"].startswith("vm-")

    vm0 = load_yaml(out / "dc0-h0-vm0-vm.yaml")
    assert vm0["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][0]["macAddress"] == "00:50:56:12:34:56"

    stamp = (out / "dc0-h0-vm0-disk-0.img").stat().st_mtime_ns
    yamls = {p.name: p.read_bytes() for p in out.glob("*.yaml")}
    second = _convert(fresh_vcsim, "DC0_H0_VM0", out)
    assert second.returncode == 0, second.stderr
    assert "already converted, skipped" in second.stderr
    assert (out / "dc0-h0-vm0-disk-0.img").stat().st_mtime_ns == stamp
    assert {p.name: p.read_bytes() for p in out.glob("*.yaml")} == yamls


def test_vsphere_dry_run_and_wrong_password(vcsim: simulator.Simulator, tmp_path: Path) -> None:
    out = tmp_path / "out"
    dry = _convert(vcsim, "DC0_H0_VM0", out, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert not out.exists() and "kind: VirtualMachine" in dry.stdout
    wrong = migrator(
        "convert",
        "--source",
        vcsim.source_url(),
        "--insecure",
        "--vm",
        "DC0_H0_VM0",
        "--output-dir",
        str(out),
        env={ENV: "not-the-password"},
    )
    assert wrong.returncode != 0 and len(wrong.stderr.strip().splitlines()) == 1
    assert "not-the-password" not in wrong.stderr and not out.exists()
