"""An encrypted VM's disks cannot be read without its keys."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    encrypted = [d.label for d in vm.disks if d.encrypted]
    if not vm.encrypted and not encrypted:
        return []
    what = "The VM" if vm.encrypted else ", ".join(encrypted)
    return [RULE.concern(f"{what} is encrypted by vSphere; decrypt it in VMware before migrating.")]


RULE = Rule(
    "encrypted-vm",
    Severity.CRITICAL,
    check,
    "the VM or a disk is encrypted",
    remedy="Decrypt the VM and its disks in vSphere before migrating.",
)
