"""USB controllers (and devices behind them) are not carried over."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    usb = vm.usb_controllers + [p.label for p in vm.passthrough if p.kind == "usb"]
    if not usb:
        return []
    return [RULE.concern(f"The VM has USB controllers or devices ({', '.join(usb)}); they are not migrated.")]


RULE = Rule(
    "usb-controller",
    Severity.WARNING,
    check,
    "the VM has a USB controller",
    remedy="Nothing blocks the move: USB devices are not carried over; remove any the guest depends on.",
)
