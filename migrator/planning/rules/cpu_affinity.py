"""CPU affinity pins vCPUs to host CPUs; it is not carried over."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if not vm.cpu.affinity:
        return []
    cpus = ",".join(str(c) for c in vm.cpu.affinity)
    return [RULE.concern(f"The VM is pinned to host CPUs {cpus}; CPU affinity is not migrated.")]


RULE = Rule(
    "cpu-affinity",
    Severity.WARNING,
    check,
    "the VM has CPU affinity",
    remedy="Remove the CPU affinity, or recreate it on the target with a dedicated CPU placement.",
)
