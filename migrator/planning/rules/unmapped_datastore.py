"""A disk on a datastore the storage map leaves out, with no default storage class."""

from __future__ import annotations

from core.inventory import VM
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    disks = {d.label: d for d in vm.disks}
    return [
        RULE.concern(
            f"{label} is on datastore {disks[label].datastore!r}, which the storage map does not cover; "
            f"map it with --storage '{disks[label].datastore}=STORAGECLASS' or set --default-storage-class."
        )
        for label in context.unmapped_datastores
    ]


RULE = Rule(
    "unmapped-datastore",
    Severity.CRITICAL,
    check,
    "a disk's datastore has no storage class",
    remedy="Map the datastore to a storage class (--storage DS=CLASS, or the map file).",
)
