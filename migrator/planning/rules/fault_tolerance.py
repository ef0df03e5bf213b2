"""vSphere Fault Tolerance has no equivalent on the target."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if not vm.fault_tolerance:
        return []
    return [RULE.concern("Fault Tolerance is enabled; the migrated VM will not have it.")]


RULE = Rule(
    "fault-tolerance",
    Severity.WARNING,
    check,
    "fault tolerance is enabled",
    remedy="Turn off Fault Tolerance for the VM before migrating.",
)
