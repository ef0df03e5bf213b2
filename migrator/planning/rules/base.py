"""What every rule gets and gives: the VM, its planned form, the whole plan, the maps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from core.inventory import VM
from core.plan import Concern, PlannedNic, PlannedVM, Severity


@dataclass
class RuleContext:
    planned: PlannedVM  # this VM's target name, disks (storage classes) and NICs (network targets)
    plan_vms: list[PlannedVM]  # every VM in the plan, for cross-VM rules (MACs, names)
    unmapped_networks: list[str] = field(default_factory=list)  # NIC labels with no network mapping
    extra_pod_nics: list[str] = field(default_factory=list)  # NIC labels beyond the one pod NIC
    unmapped_datastores: list[str] = field(default_factory=list)  # disk labels with no storage mapping
    max_volume_bytes: dict[str, int] = field(default_factory=dict)  # disk label → its class's limit
    collides_with: list[str] = field(default_factory=list)  # source names sanitising to the same label
    # lower-case MAC → every migrated (not ignored) NIC in the plan with it; one dict shared by all VMs
    mac_owners: dict[str, list[tuple[PlannedVM, PlannedNic]]] = field(default_factory=dict)
    virtio_win: str | None = None  # VIRTIO_WIN: where virt-v2v finds virtio-win drivers for Windows guests


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    check: Callable[[VM, RuleContext], list[Concern]]
    summary: str = ""
    remedy: str = ""  # what to do about it, in one sentence (the assessment report shows it)

    def concern(self, message: str) -> Concern:
        return Concern(id=self.id, severity=self.severity, message=message)

    def __call__(self, vm: VM, context: RuleContext) -> list[Concern]:
        return self.check(vm, context)


def gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"
