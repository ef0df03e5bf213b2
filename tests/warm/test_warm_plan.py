"""`type: warm` in the plan: the model, the file format, and the rules that read it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from core.inventory import Snapshot
from core.plan import Plan, Severity
from migrator.planning.mapping import Maps
from migrator.planning.planner import PlanOptions, build_plan
from tests.planning.factory import make_vm

SCHEMA = Path(__file__).resolve().parents[2] / "migrator" / "planning" / "plan.schema.json"


def _plan(vm, migration_type: str) -> Plan:
    return build_plan([vm], Maps(), PlanOptions(name="p", source="vsphere://u@vc", migration_type=migration_type))


def test_type_round_trips_and_validates() -> None:
    plan = _plan(make_vm(), "warm")
    assert plan.vms[0].type == "warm"
    data = plan.to_dict()
    jsonschema.validate(json.loads(json.dumps(data)), json.loads(SCHEMA.read_text()))
    assert Plan.from_dict(data).vms[0].type == "warm"
    del data["vms"][0]["type"]  # plans written before the field: cold
    assert Plan.from_dict(data).vms[0].type == "cold"


def test_cbt_off_is_critical_only_for_a_warm_vm() -> None:
    vm = make_vm(cbt_enabled=False)
    [cold] = [c for c in _plan(vm, "cold").vms[0].concerns if c.id == "cbt-disabled"]
    [warm] = [c for c in _plan(vm, "warm").vms[0].concerns if c.id == "cbt-disabled"]
    assert cold.severity is Severity.WARNING and warm.severity is Severity.CRITICAL
    assert "--enable-cbt" in warm.message


def test_a_warm_vm_with_snapshots_of_its_own_is_blocked() -> None:
    vm = make_vm(cbt_enabled=True, snapshots=[Snapshot(name="before-upgrade", created=None, children=0)])
    assert "warm-snapshot-chain" not in [c.id for c in _plan(vm, "cold").vms[0].concerns]
    planned = _plan(vm, "warm").vms[0]
    assert planned.blocked and "warm-snapshot-chain" in planned.critical_ids()
    leftover = make_vm(cbt_enabled=True, snapshots=[Snapshot(name="migrator-precopy-3", created=None, children=0)])
    assert "warm-snapshot-chain" not in [c.id for c in _plan(leftover, "warm").vms[0].concerns]
