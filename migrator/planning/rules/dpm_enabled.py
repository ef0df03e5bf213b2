"""Distributed Power Management on the source cluster has no equivalent on the target."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if vm.cluster is None or not vm.cluster.dpm_enabled:
        return []
    return [RULE.concern(f"Cluster {vm.cluster.name!r} uses Distributed Power Management; the target has no DPM.")]


RULE = Rule(
    "dpm-enabled",
    Severity.INFORMATION,
    check,
    "the source cluster uses DPM",
    remedy="Disable DPM on the cluster during the migration window so hosts stay powered on.",
)
