"""A NIC mapped to a Multus network: KubeVirt runs it (bridge binding on the pod's secondary interface); the
bundled runtime does not (its launcher has only the pod network), so the VM needs KubeVirt itself."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, NetworkTarget, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    multus = [nic for nic in context.planned.nics if nic.target is NetworkTarget.MULTUS]
    if not multus:
        return []
    nics = ", ".join(f"{nic.label} → multus:{nic.multus}" for nic in multus)
    return [
        RULE.concern(
            f"{nics}: Multus networks run on KubeVirt itself, not on the bundled runtime "
            "(migrator runtime); install KubeVirt on the target cluster, or map the NIC to pod or ignore."
        )
    ]


RULE = Rule(
    "multus-needs-kubevirt",
    Severity.WARNING,
    check,
    "a NIC maps to a Multus network (needs KubeVirt)",
    remedy="Run the VM on a cluster with KubeVirt installed, or map the NIC to pod or ignore (--network SRC=pod).",
)
