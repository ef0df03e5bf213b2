"""KubeVirt-based targets take at most 165 disks per VM (the limit Forklift checks)."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext

MAX_DISKS = 165


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if len(vm.disks) <= MAX_DISKS:
        return []
    return [RULE.concern(f"The VM has {len(vm.disks)} disks; the target takes at most {MAX_DISKS}.")]


RULE = Rule(
    "too-many-disks",
    Severity.WARNING,
    check,
    "more disks than the target takes",
    remedy="Remove or merge disks so the VM fits the target's limit.",
)
