"""Fully automated DRS moves VMs between hosts; the target schedules pods its own way."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    cluster = vm.cluster
    if cluster is None or not cluster.drs_enabled or cluster.drs_behavior != "fullyAutomated":
        return []
    return [
        RULE.concern(
            f"Cluster {cluster.name!r} runs DRS fully automated; the VM may move hosts while it is copied, "
            "and the target does not rebalance VMs the same way."
        )
    ]


RULE = Rule(
    "drs-fully-automated",
    Severity.INFORMATION,
    check,
    "the source cluster runs DRS fully automated",
    remedy="Set DRS to manual or partially automated for the VM during the migration window.",
)
