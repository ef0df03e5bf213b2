"""Raw device mappings point at a LUN, not a file: there is nothing to copy."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    return [
        RULE.concern(
            f"{d.label} is a raw device mapping ({d.rdm_compatibility or 'unknown mode'}); "
            "RDM disks cannot be migrated."
        )
        for d in vm.disks
        if d.rdm
    ]


RULE = Rule(
    "rdm-disk",
    Severity.CRITICAL,
    check,
    "a disk is a raw device mapping",
    remedy="Convert the raw device mapping to a virtual disk (Storage vMotion to a VMDK), or exclude it.",
)
