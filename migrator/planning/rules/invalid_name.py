"""A VM name that is not an RFC 1123 label is renamed on the target (the original is kept as an annotation)."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.naming import is_valid_name
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if is_valid_name(vm.name):
        return []
    return [
        RULE.concern(
            f"The name {vm.name!r} is not a valid Kubernetes name (RFC 1123); "
            f"the VM will be called {context.planned.target_name!r}."
        )
    ]


RULE = Rule(
    "invalid-name",
    Severity.WARNING,
    check,
    "the VM name is not RFC 1123 and is renamed",
    remedy="Nothing to do: the VM is renamed to a valid Kubernetes name; rename it at the source to choose.",
)
