"""EFI secure boot needs SMM and a secure-boot OVMF on the target node."""

from __future__ import annotations

from core.inventory import VM, Firmware
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if vm.firmware is not Firmware.EFI or not vm.secure_boot:
        return []
    return [
        RULE.concern(
            "EFI secure boot is on: the target VM needs SMM and secure-boot firmware, "
            "and the guest's boot entries are rebuilt by the new firmware."
        )
    ]


RULE = Rule(
    "secure-boot",
    Severity.INFORMATION,
    check,
    "EFI secure boot is enabled (needs SMM)",
    remedy="Nothing blocks the move: the target starts with SMM and Secure Boot enabled.",
)
