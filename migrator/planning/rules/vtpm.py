"""The virtual TPM's contents (keys, measurements) are not transferred."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if not vm.vtpm:
        return []
    return [RULE.concern("The VM has a virtual TPM; its data (e.g. BitLocker keys) is not migrated.")]


RULE = Rule(
    "vtpm",
    Severity.WARNING,
    check,
    "the VM has a virtual TPM",
    remedy="The target gives the VM a new, empty TPM: suspend BitLocker or re-seal keys before migrating.",
)
