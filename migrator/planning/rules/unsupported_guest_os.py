"""Guest operating systems the target cannot convert or run (the list Forklift checks)."""

from __future__ import annotations

import re

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext

# vSphere guest ids ("rhel6_64Guest") and VMX guestOS values ("rhel6-64"), normalised
UNSUPPORTED = {"rhel6", "rhel664", "photon", "photon64", "vmwarephoton64"}


def normalize(guest_id: str) -> str:
    return re.sub(r"[-_]", "", guest_id.lower()).removesuffix("guest")


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if not vm.guest_id or normalize(vm.guest_id) not in UNSUPPORTED:
        return []
    name = f" ({vm.guest_name})" if vm.guest_name else ""
    return [RULE.concern(f"The guest operating system {vm.guest_id}{name} is not supported on the target.")]


RULE = Rule(
    "unsupported-guest-os",
    Severity.WARNING,
    check,
    "the guest OS is not supported",
    remedy="Upgrade the guest OS to a supported release, or accept running it unsupported.",
)
