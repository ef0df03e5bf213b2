"""The rule set: one rule per module, each a small function ``(vm, context) -> list[Concern]``.

``RULES`` is data: the list of every rule, in the order its concerns are reported.
A rule module defines ``RULE = Rule(id, severity, check)``; its check builds concerns
with ``RULE.concern(message)`` so ids and severities live in one place.
"""

from __future__ import annotations

import importlib

from migrator.planning.rules.base import Rule, RuleContext

# module names under migrator.planning.rules, in report order (blocking matters first)
RULE_MODULES: tuple[str, ...] = (
    "unmapped_network",
    "multiple_pod_nics",
    "multus_needs_kubevirt",
    "unmapped_datastore",
    "disk_not_on_datastore",
    "invalid_disk_capacity",
    "disk_not_convertible",
    "disk_exceeds_storage_class",
    "invalid_memory",
    "independent_disk",
    "rdm_disk",
    "pci_passthrough",
    "encrypted_vm",
    "duplicate_mac",
    "name_collision",
    "invalid_name",
    "shared_disk",
    "too_many_disks",
    "cbt_disabled",
    "cbt_disabled_disk",
    "snapshots",
    "warm_snapshot_chain",
    "consolidation_needed",
    "cpu_affinity",
    "numa_affinity",
    "cpu_memory_hotplug",
    "fault_tolerance",
    "host_affinity",
    "dpm_enabled",
    "drs_fully_automated",
    "hostname",
    "no_guest_ips",
    "disk_serials",
    "sriov_nic",
    "vtpm",
    "usb_controller",
    "secure_boot",
    "unsupported_guest_os",
    "windows_virtio_drivers",
)


def load_rules() -> list[Rule]:
    return [importlib.import_module(f"{__name__}.{name}").RULE for name in RULE_MODULES]


RULES: list[Rule] = load_rules()

__all__ = ["RULES", "RULE_MODULES", "Rule", "RuleContext", "load_rules"]
