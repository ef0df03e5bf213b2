"""The pod network takes one interface per VM (masquerade); a second pod NIC cannot be built."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if not context.extra_pod_nics:
        return []
    labels = ", ".join(context.extra_pod_nics)
    return [
        RULE.concern(
            f"Only one NIC can use the pod network, but {labels} also map to it; "
            "map the other networks to multus:NS/NAME or ignore."
        )
    ]


RULE = Rule(
    "multiple-pod-nics",
    Severity.CRITICAL,
    check,
    "more than one NIC maps to the pod network",
    remedy="Map all but one of the VM's networks to Multus networks or ignore them (--network SRC=multus:NS/NAME).",
)
