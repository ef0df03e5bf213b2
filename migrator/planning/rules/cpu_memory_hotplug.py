"""CPU and memory hot-add are not carried over: the VM gets the sizes it has now."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    enabled = [what for what, on in (("CPU", vm.cpu.hot_add), ("memory", vm.memory_hot_add)) if on]
    if not enabled:
        return []
    what = " and ".join(enabled)
    return [RULE.concern(f"{what[0].upper()}{what[1:]} hot-add is enabled; the VM keeps its current sizes.")]


RULE = Rule(
    "cpu-memory-hotplug",
    Severity.WARNING,
    check,
    "CPU or memory hot-add is enabled",
    remedy="Nothing blocks the move; hot-add is not carried over, so size CPU and memory for peak load.",
)
