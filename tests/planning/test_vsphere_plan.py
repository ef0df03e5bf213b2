"""An end-to-end plan from the vCenter simulator, through the real CLI and H1's vSphere adapter."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from migrator.planning.planfile import read_plan
from tests.planning.cli import assert_one_line_error, run_migrator


def _adapter_ready() -> bool:
    try:
        return hasattr(importlib.import_module("migrator.sources.vsphere"), "open_vsphere")
    except ImportError:
        return False


pytestmark = pytest.mark.skipif(
    not _adapter_ready(), reason="the vSphere adapter (migrator.sources.vsphere) is not there yet"
)


def test_plan_from_simulator(vcsim, tmp_path: Path) -> None:
    env = {"MIGRATOR_VSPHERE_PASSWORD": vcsim.password}
    result = run_migrator("plan", "--source", vcsim.source_url(), "--insecure", "-o", "json", cwd=tmp_path, env=env)
    assert result.returncode in (0, 3), result.stderr
    data = json.loads(result.stdout)
    names = sorted(v["source_name"] for v in data["vms"])
    assert names == ["DC0_C0_RP0_VM0", "DC0_C0_RP0_VM1", "DC0_H0_VM0", "DC0_H0_VM1"]
    for vm in data["vms"]:
        assert vm["target_name"] == vm["source_name"].lower().replace("_", "-")
        assert vm["vm"]["source"] == "vsphere"
        assert vm["disks"] and all(d["datastore"] for d in vm["disks"])
        assert vm["nics"] and vm["nics"][0]["target"] == "pod"
    assert data["source"] == vcsim.source_url()
    plan_text = (tmp_path / "plan.yaml").read_text()
    assert vcsim.password not in plan_text and vcsim.password not in result.stdout
    assert len(read_plan(tmp_path / "plan.yaml").vms) == 4


def test_simulator_selection_and_errors(vcsim, tmp_path: Path) -> None:
    env = {"MIGRATOR_VSPHERE_PASSWORD": vcsim.password}
    source = vcsim.source_url()
    one = run_migrator(
        "plan", "--source", source, "--insecure", "--vm", "DC0_H0_*", "-o", "json", cwd=tmp_path, env=env
    )
    assert one.returncode in (0, 3), one.stderr
    assert sorted(v["source_name"] for v in json.loads(one.stdout)["vms"]) == ["DC0_H0_VM0", "DC0_H0_VM1"]
    missing = run_migrator("plan", "--source", source, "--insecure", "--vm", "ghost", cwd=tmp_path, env=env)
    assert_one_line_error(missing, "ghost")
    untrusted = run_migrator("plan", "--source", source, cwd=tmp_path, env=env)
    assert_one_line_error(untrusted)


def test_simulator_cluster_and_storage_map(vcsim, tmp_path: Path) -> None:
    env = {"MIGRATOR_VSPHERE_PASSWORD": vcsim.password}
    common = ("plan", "--source", vcsim.source_url(), "--insecure", "-o", "json", "--output-file", "-")
    mapped = run_migrator(*common, "--cluster", "DC0_C0", "--storage", "LocalDS_0=standard", cwd=tmp_path, env=env)
    assert mapped.returncode == 0, mapped.stderr
    vms = json.loads(mapped.stdout)["vms"]
    assert sorted(v["source_name"] for v in vms) == ["DC0_C0_RP0_VM0", "DC0_C0_RP0_VM1"]
    assert {d["storage_class"] for v in vms for d in v["disks"]} == {"standard"}
    unmapped = run_migrator(*common, "--folder", "/DC0/vm", "--storage", "elsewhere=fast", cwd=tmp_path, env=env)
    assert unmapped.returncode == 3
    plan = json.loads(unmapped.stdout)
    assert len(plan["vms"]) == 4
    assert all("unmapped-datastore" in [c["id"] for c in v["concerns"]] for v in plan["vms"])


def test_simulator_password_file(vcsim, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(vcsim.password + "\n")
    common = ("plan", "--source", vcsim.source_url(), "--insecure", "--vm", "DC0_H0_VM0", "-o", "yaml")
    result = run_migrator(*common, "--password-file", str(secret), cwd=tmp_path, env={})
    assert result.returncode == 0, result.stderr
    assert vcsim.password not in (tmp_path / "plan.yaml").read_text()
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)  # a private file: the only line is the login failure
    assert_one_line_error(run_migrator(*common, "--password-file", str(wrong), cwd=tmp_path, env={}))
