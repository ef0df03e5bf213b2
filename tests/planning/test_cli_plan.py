"""`migrator plan` through the real console script: outputs, plan file, exit codes, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from migrator.planning.planfile import read_plan
from tests.conftest import SAMPLES_OVF, SAMPLES_VMX
from tests.planning.cli import assert_one_line_error, run_migrator

VAPP = SAMPLES_OVF / "Alpha-demo__vApp_with_2vms__vApp_with_2vms.ovf"
PASSTHROUGH = SAMPLES_OVF / "pci-passthrough__ah__AH-VM-1.ovf"


@pytest.fixture
def fedora(tmp_path: Path) -> Path:
    """The Fedora sample with a real VMDK beside it, so nothing blocks it."""
    shutil.copy(SAMPLES_VMX / "test-i-vmx-2.vmx", tmp_path / "fedora.vmx")
    subprocess.run(["qemu-img", "create", "-f", "vmdk", str(tmp_path / "Fedora-20.vmdk"), "1G"], check=True)
    return tmp_path / "fedora.vmx"


def test_json_output_and_default_plan_file(fedora: Path, tmp_path: Path) -> None:
    result = run_migrator("plan", "--source", f"vmx:{fedora}", "-o", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["kind"] == "Plan" and data["name"] == "fedora"
    (vm,) = data["vms"]
    assert vm["target_name"] == "fedora-20" and vm["source_name"] == "Fedora 20"
    assert vm["nics"][0]["target"] == "pod" and vm["nics"][0]["mac"] == "00:50:56:9b:5f:0d"
    assert vm["disks"][0]["capacity_bytes"] == 2**30
    assert vm["disks"][0]["transfer_bytes"] < 2**30  # a sparse VMDK: allocated bytes, not capacity
    assert "invalid-name" in [c["id"] for c in vm["concerns"]]
    plan = read_plan(tmp_path / "plan.yaml")  # written by default, and valid
    assert plan.vms[0].target_name == "fedora-20"
    assert result.stderr.strip().startswith("wrote ")


def test_yaml_and_table_outputs(tmp_path: Path) -> None:
    out = tmp_path / "vapp.yaml"
    result = run_migrator(
        "plan",
        "--source",
        f"ovf:{VAPP}",
        "-o",
        "yaml",
        "--output-file",
        str(out),
        "--namespace",
        "apps",
        "--name",
        "vapp",
        cwd=tmp_path,
        env={"VIRTIO_WIN": "/srv/virtio-win.iso"},  # the vApp's Windows VM is not blocked for want of drivers
    )
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    assert [v["target_name"] for v in data["vms"]] == ["sql2k5-win-2k3-32-ent-sp2-ovf", "centos-5-5-32-esx-qa"]
    assert data["target_namespace"] == "apps" and data["name"] == "vapp"
    assert read_plan(out).target_namespace == "apps"
    table = run_migrator(
        "plan", "--source", f"ovf:{VAPP}", "--output-file", "-", cwd=tmp_path, env={"VIRTIO_WIN": "/srv/virtio-win.iso"}
    )
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[1].split()[:2] == ["VM", "TARGET"]
    assert any(line.startswith("centos-5.5-32-esx-qa") and "256.0 MiB" in line for line in lines)
    assert "2 ready, 0 blocked" in table.stdout
    assert not (tmp_path / "plan.yaml").exists()  # '-' writes no plan file


def test_blocked_vm_exits_3(tmp_path: Path) -> None:
    result = run_migrator("plan", "--source", f"ovf:{PASSTHROUGH}", "-o", "json", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    vm = json.loads(result.stdout)["vms"][0]
    assert "pci-passthrough" in [c["id"] for c in vm["concerns"] if c["severity"] == "Critical"]
    assert (tmp_path / "plan.yaml").exists()  # the plan is still written: it says why


def test_maps_from_file_and_flags(fedora: Path, tmp_path: Path) -> None:
    maps = tmp_path / "map.yaml"
    maps.write_text("networks:\n  VM Network: multus:net/prod\n")
    result = run_migrator(
        "plan",
        "--source",
        f"vmx:{fedora}",
        "--map",
        str(maps),
        "--default-storage-class",
        "fast",
        "-o",
        "json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    vm = json.loads(result.stdout)["vms"][0]
    assert vm["nics"][0]["target"] == "multus" and vm["nics"][0]["multus"] == "net/prod"
    assert vm["disks"][0]["storage_class"] == "fast"
    unmapped = run_migrator("plan", "--source", f"vmx:{fedora}", "--network", "Other=pod", "-o", "json", cwd=tmp_path)
    assert unmapped.returncode == 3
    assert "unmapped-network" in unmapped.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--vm", "nope"], "no VM named 'nope'"),
        (["--map", "/nonexistent/map.yaml"], "map file /nonexistent/map.yaml does not exist"),
        (["--network", "broken"], "SOURCE=TARGET"),
        (["--namespace", "Bad_NS"], "--namespace"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    result = run_migrator("plan", "--source", f"ovf:{VAPP}", *args, cwd=tmp_path)
    assert_one_line_error(result, needle)
    assert result.returncode == 2
    assert not (tmp_path / "plan.yaml").exists()


def test_malformed_map_file_and_missing_source(tmp_path: Path) -> None:
    bad = tmp_path / "map.yaml"
    bad.write_text("networks: {a: pod\n")
    assert_one_line_error(run_migrator("plan", "--source", f"ovf:{VAPP}", "--map", str(bad), cwd=tmp_path), "YAML")
    assert_one_line_error(run_migrator("plan", cwd=tmp_path), "--source is required")
    assert_one_line_error(run_migrator("plan", "--source", "ftp:/x", cwd=tmp_path), "unknown source")
