"""SR-IOV NICs are bound to the source host's physical functions."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    labels = [n.label for n in vm.nics if n.sriov] + [p.label for p in vm.passthrough if p.kind == "sriov"]
    if not labels:
        return []
    return [
        RULE.concern(
            f"{', '.join(labels)} use SR-IOV; it becomes a regular interface, set SR-IOV up on the target after."
        )
    ]


RULE = Rule(
    "sriov-nic",
    Severity.WARNING,
    check,
    "the VM has SR-IOV NICs",
    remedy="Replace the SR-IOV NIC with a vmxnet3 one, or map it to an SR-IOV network on the target.",
)
