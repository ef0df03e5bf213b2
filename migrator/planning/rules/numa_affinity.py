"""NUMA node affinity is a host placement rule; it is not carried over."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if not vm.cpu.numa_affinity:
        return []
    nodes = ",".join(str(n) for n in vm.cpu.numa_affinity)
    return [RULE.concern(f"The VM is bound to NUMA nodes {nodes}; NUMA affinity is not migrated.")]


RULE = Rule(
    "numa-affinity",
    Severity.WARNING,
    check,
    "the VM has NUMA node affinity",
    remedy="Remove the NUMA affinity, or recreate it on the target with dedicated CPU placement.",
)
