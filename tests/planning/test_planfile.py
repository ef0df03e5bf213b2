"""The plan file: YAML that round-trips and validates against plan.schema.json."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from core.errors import InputError, NotFoundError
from core.inventory import PassthroughDevice
from migrator.planning.mapping import build_maps
from migrator.planning.planfile import plan_document, read_plan, schema, validate, write_plan
from migrator.sources import open_source
from tests.conftest import SAMPLES_OVF, SAMPLES_VMX
from tests.planning.cli import assert_one_line_error, run_migrator
from tests.planning.factory import make_vm, plan_of


def test_schema_is_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


def test_round_trip(tmp_path: Path) -> None:
    vm = make_vm("Web 01", passthrough=[PassthroughDevice("PCI device 0", "pci", None)])
    plan = plan_of(vm, make_vm("db"), maps=build_maps(network_flags=["VM Network=multus:ns/net"]))
    path = write_plan(plan, tmp_path / "sub" / "plan.yaml", check=True)
    again = read_plan(path)
    assert again == plan
    assert again.vms[0].blocked and again.vms[0].target_name == "web-01"
    assert again.vms[0].nics[0].multus == "ns/net"


def test_a_plan_written_before_claim_name_was_named_so_still_reads(tmp_path: Path) -> None:
    plan = plan_of(make_vm("web"))
    old = plan.to_dict()
    for disk in old["vms"][0]["disks"]:
        disk["volume_name"] = disk.pop("claim_name")
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old))
    again = read_plan(path)
    assert again == plan and again.vms[0].disks[0].claim_name == "web-disk-0"


def test_every_sample_plan_validates(tmp_path: Path) -> None:
    specs = [f"vmx:{p}" for p in sorted(SAMPLES_VMX.glob("*.vmx"))] + [
        f"ovf:{p}" for p in sorted(SAMPLES_OVF.glob("*.ovf"))
    ]
    for index, spec in enumerate(specs):
        vms = open_source(spec).inventory().vms
        plan = plan_of(*vms)
        path = write_plan(plan, tmp_path / f"{index}.yaml", check=True)
        assert plan_document(plan) == plan.to_dict()
        assert read_plan(path) == plan, spec


def test_invalid_plans_are_refused(tmp_path: Path) -> None:
    good = plan_of(make_vm()).to_dict()
    for mutate, needle in (
        (lambda d: d.update(apiVersion="v2"), "apiVersion"),
        (lambda d: d["vms"][0].update(target_name="Bad Name"), "target_name"),
        (lambda d: d["vms"][0]["concerns"].append({"id": "x", "severity": "Fatal", "message": "m"}), "severity"),
        (lambda d: d.update(source="vsphere://admin:secret@vc"), "source"),
    ):
        data = copy.deepcopy(good)
        mutate(data)
        with pytest.raises(InputError, match=needle):
            validate(data)
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({**good, "kind": "Other"}))
    with pytest.raises(InputError, match="not a valid plan"):
        read_plan(broken)
    with pytest.raises(NotFoundError):
        read_plan(tmp_path / "absent.yaml")


def test_json_plan_file(tmp_path: Path) -> None:
    plan = plan_of(make_vm("a"), make_vm("b", unique_macs=1))
    path = write_plan(plan, tmp_path / "plan.json", check=True)
    assert path.read_text().startswith("{")
    assert read_plan(path) == plan
    assert yaml.safe_load(path.read_text()) == plan.to_dict()  # JSON is YAML: one reader for both


def test_a_file_that_is_no_plan_is_not_echoed_back(tmp_path: Path) -> None:
    """`--plan` given the wrong file (a passwd-like text, a large mapping): the error names what is wrong in a
    short line, and does not print the file's content."""
    secretish = tmp_path / "accounts"
    secretish.write_text("".join(f"user{i}:x:{i}:{i}:secret-hash-{i}:/home/u{i}:/bin/sh " for i in range(200)))
    result = run_migrator("report", "--plan", str(secretish), "--output", str(tmp_path / "r.html"), cwd=tmp_path)
    assert_one_line_error(result, "is not a valid plan", "is not of type 'object'")
    assert result.returncode == 2
    assert "secret-hash-100" not in result.stderr and len(result.stderr) < 300, result.stderr
