"""PCI passthrough devices (and vGPUs) are bound to the source host's hardware."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    devices = [p for p in vm.passthrough if p.kind in ("pci", "vgpu", "dvx")]
    if not devices:
        return []
    names = ", ".join(f"{p.label} ({p.kind}{': ' + p.detail if p.detail else ''})" for p in devices)
    return [RULE.concern(f"The VM uses host passthrough devices ({names}); remove them in VMware before migrating.")]


RULE = Rule(
    "pci-passthrough",
    Severity.CRITICAL,
    check,
    "the VM has PCI passthrough or vGPU devices",
    remedy="Remove the passthrough devices, or plan host devices on the target cluster by hand.",
)
