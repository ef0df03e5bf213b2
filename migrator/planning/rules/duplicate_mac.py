"""Two migrated NICs with the same MAC address would clash on the target network."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, NetworkTarget, Severity
from migrator.planning.rules.base import Rule, RuleContext

SHOWN = 3  # how many other owners a message names


def check(vm: VM, context: RuleContext) -> list[Concern]:
    concerns = []
    for nic in context.planned.nics:
        if not nic.mac or nic.target is NetworkTarget.IGNORE:
            continue
        owners = context.mac_owners.get(nic.mac.lower(), [])
        if len(owners) < 2:
            continue
        # name a few others only: a MAC shared by thousands of VMs must not cost thousands squared
        others = [
            other_nic.label if other is context.planned else f"{other.source_name} {other_nic.label}"
            for other, other_nic in owners[: SHOWN + 1]
            if other_nic is not nic
        ][:SHOWN]
        more = len(owners) - 1 - len(others)
        named = ", ".join(others) + (f" and {more} more" if more else "")
        concerns.append(RULE.concern(f"{nic.label} has MAC {nic.mac}, which {named} in this plan also has."))
    return concerns


RULE = Rule(
    "duplicate-mac",
    Severity.WARNING,
    check,
    "a MAC address appears twice in the plan",
    remedy="Give one of the NICs a new MAC address, or migrate the two VMs to different networks.",
)
