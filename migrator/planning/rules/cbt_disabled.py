"""Without changed-block tracking, only a cold migration (full copy while powered off) is possible.

A Warning for a VM planned cold; Critical for one planned warm (``type: warm``), which cannot start
without it (``migrator cutover --warm --enable-cbt`` turns it on).
"""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if vm.cbt_enabled is not False:
        return []
    message = "Changed Block Tracking is off for the VM: a warm migration needs it (set ctkEnabled = TRUE)."
    if context.planned.type == "warm":
        return [Concern(RULE.id, Severity.CRITICAL, message[:-1] + ", or cut over with --enable-cbt.")]
    return [RULE.concern(message)]


RULE = Rule(
    "cbt-disabled",
    Severity.WARNING,
    check,
    "changed block tracking is off for the VM (Critical when warm)",
    remedy=(
        "Enable changed-block tracking (ctkEnabled = TRUE, or `migrator cutover --warm --enable-cbt`) to migrate warm;"
        " cold migration works without it."
    ),
)
