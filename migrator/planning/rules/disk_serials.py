"""With disk.EnableUUID the guest sees SCSI disk serials; they may be truncated after migration."""

from __future__ import annotations

from core.inventory import VM, ControllerKind
from core.plan import Concern, Severity
from migrator.planning.rules.base import Rule, RuleContext


def check(vm: VM, context: RuleContext) -> list[Concern]:
    if not vm.disk_enable_uuid or not any(d.controller.kind is ControllerKind.SCSI for d in vm.disks):
        return []
    return [
        RULE.concern(
            "disk.EnableUUID is set and the VM has SCSI disks: the guest may rely on disk serial numbers, "
            "which can be truncated after migration."
        )
    ]


RULE = Rule(
    "disk-serials",
    Severity.INFORMATION,
    check,
    "SCSI disk serials are exposed (disk.EnableUUID)",
    remedy="Nothing to do unless the guest identifies disks by serial; the target exposes the same serials.",
)
