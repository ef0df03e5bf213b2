"""Static IPs can only be preserved when the source reports them (powered on, VMware Tools running)."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if not vm.nics or vm.ip_addresses or any(n.ips for n in vm.nics):
        return []
    if vm.source == "vsphere":
        why = "the VM must be powered on with VMware Tools running to report them"
    else:
        why = f"the {vm.source.upper()} file does not record them"
    return [RULE.concern(f"No guest IP addresses are known, so static IPs cannot be preserved ({why}).")]


RULE = Rule(
    "no-guest-ips",
    Severity.WARNING,
    check,
    "no guest IP addresses are known",
    remedy="Start VMware Tools in the guest so its addresses are known, or record them before cutover.",
)
