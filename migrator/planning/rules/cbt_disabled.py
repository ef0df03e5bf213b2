"""Without changed-block tracking, only a cold migration (full copy while powered off) is possible."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if vm.cbt_enabled is not False:
        return []
    return [
        RULE.concern("Changed Block Tracking is off for the VM: a warm migration needs it (set ctkEnabled = TRUE).")
    ]


RULE = Rule(
    "cbt-disabled",
    Severity.WARNING,
    check,
    "changed block tracking is off for the VM",
    remedy=(
        "Enable changed-block tracking (ctkEnabled = TRUE, or `migrator cutover --warm --enable-cbt`) to migrate warm;"
        " cold migration works without it."
    ),
)
