"""Two VM names that sanitise to the same Kubernetes name: one gets a numbered suffix."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if not context.collides_with:
        return []
    others = ", ".join(repr(n) for n in context.collides_with)
    return [
        RULE.concern(
            f"The name {vm.name!r} becomes the same Kubernetes name as {others}; "
            f"this VM will be called {context.planned.target_name!r}."
        )
    ]


RULE = Rule(
    "name-collision",
    Severity.WARNING,
    check,
    "two VM names sanitise to the same target name",
    remedy="Rename one of the VMs at the source, or plan them into different namespaces.",
)
