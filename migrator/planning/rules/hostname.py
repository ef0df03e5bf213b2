"""An empty or default guest hostname: the guest may be renamed on the target."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext

DEFAULT_HOSTNAMES = ("localhost", "localhost.localdomain", "localhost6.localdomain6")


def check(vm: VM, context: RuleContext) -> list[Concern]:
    hostname = vm.hostname
    if hostname is None and vm.source != "vsphere":
        return []  # VMX/OVF files do not record the guest hostname: nothing to judge
    if not hostname:
        return [RULE.concern("The guest reports no hostname; the VM's hostname might change on the target.")]
    if hostname.lower() in DEFAULT_HOSTNAMES:
        return [RULE.concern(f"The guest hostname is the default {hostname!r}; it might change on the target.")]
    return []


RULE = Rule(
    "hostname-empty-or-default",
    Severity.WARNING,
    check,
    "the guest hostname is empty or a default",
    remedy="Set a real hostname in the guest (VMware Tools reports it) before migrating.",
)
