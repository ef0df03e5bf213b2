"""A DRS VM-host affinity rule names this VM; placement rules are not migrated."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if not vm.host_affinity:
        return []
    return [RULE.concern("A DRS VM-host affinity rule places this VM; use node affinity on the target instead.")]


RULE = Rule(
    "host-affinity",
    Severity.WARNING,
    check,
    "a VM-host affinity rule names the VM",
    remedy="Remove the VM from the DRS VM-host rule, or express it as node affinity on the target.",
)
