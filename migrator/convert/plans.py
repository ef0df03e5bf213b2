"""Where the plan comes from: a plan file, or a one-VM plan built from the source on the fly."""

from __future__ import annotations

from pathlib import Path

from core.errors import NotFoundError
from core.inventory import Inventory
from core.plan import Plan, PlannedVM
from migrator.planning import planfile, planner
from migrator.planning.mapping import Maps
from migrator.planning.naming import sanitize


def load_plan(path: Path) -> Plan:
    return planfile.read_plan(path)


def find_vm(plan: Plan, name: str) -> PlannedVM:
    planned = plan.vm(name)
    if planned is None:
        known = ", ".join(sorted(v.source_name for v in plan.vms)) or "none"
        raise NotFoundError(f"VM {name!r} is not in plan {plan.name!r} (VMs: {known})")
    return planned


def one_vm_plan(inventory: Inventory, vm_name: str, *, source: str, namespace: str) -> Plan:
    """A plan of one VM with the planner's defaults: no maps (first NIC on the pod network, the
    cluster's default StorageClass), naming and concerns exactly as `migrator plan` would give."""
    vm = inventory.by_name(vm_name)
    if vm is None:
        raise NotFoundError(f"no VM named {vm_name!r} in {inventory.source_url}")
    options = planner.PlanOptions(name=f"convert-{sanitize(vm.name)}", source=source, namespace=namespace)
    return planner.build_plan([vm], Maps(), options)


def dns_label(name: str) -> str:
    return sanitize(name)
