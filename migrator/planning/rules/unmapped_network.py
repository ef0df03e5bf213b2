"""A NIC whose source network has no target: the plan cannot say where it goes."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    nics = {n.label: n for n in vm.nics}
    return [
        RULE.concern(
            f"{label} is on network {nics[label].network or '(none)'!r}, which the network map does not cover; "
            f"map it with --network '{nics[label].network or ''}=pod|ignore|multus:NS/NAME'."
        )
        for label in context.unmapped_networks
    ]


RULE = Rule(
    "unmapped-network",
    Severity.CRITICAL,
    check,
    "a NIC's source network has no mapping",
    remedy="Map the network (--network SRC=pod|multus:NS/NAME|ignore, or the map file).",
)
