"""A VM whose memory size the source does not give (e.g. an OVF without a memory item) cannot be sized."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if vm.memory_mib > 0:
        return []
    return [RULE.concern("The source gives no memory size for the VM, so the target VM cannot be sized.")]


RULE = Rule(
    "invalid-memory",
    Severity.CRITICAL,
    check,
    "the VM has no memory size",
    remedy="Give the VM a memory size in the source (vSphere, VMX memsize, OVF memory item).",
)
