"""Two migrated NICs with the same MAC address would clash on the target network."""

from __future__ import annotations

from migrator.inventory.model import VM
from migrator.planning.model import Concern, NetworkTarget, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    concerns = []
    for nic in context.planned.nics:
        if not nic.mac or nic.target is NetworkTarget.IGNORE:
            continue
        others = [
            f"{other.source_name} {o.label}" if other is not context.planned else o.label
            for other in context.plan_vms
            for o in other.nics
            if o.mac and o.mac.lower() == nic.mac.lower() and o is not nic and o.target is not NetworkTarget.IGNORE
        ]
        if others:
            concerns.append(
                RULE.concern(f"{nic.label} has MAC {nic.mac}, which {', '.join(others)} in this plan also has.")
            )
    return concerns


RULE = Rule("duplicate-mac", Severity.WARNING, check, "a MAC address appears twice in the plan")
