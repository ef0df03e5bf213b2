"""Pure translation: a planned VM → a kubevirt.io/v1 VirtualMachine plus the volumes that hold its disks.

No I/O: plain functions over the inventory and plan dataclasses. ``dump`` gives the
deterministic YAML every writer uses (sorted keys, no timestamps): same input, same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from converters.specs.devices import is_shared
from converters.specs.metadata import vm_labels
from converters.specs.options import SpecOptions
from converters.specs.virtualmachine import source_disks, virtual_machine
from converters.specs.volumes import data_volume, persistent_volume_claim
from core.plan import Plan, PlannedVM

__all__ = ["Manifests", "SpecOptions", "dump", "vm_manifests"]


@dataclass
class Manifests:
    virtual_machine: dict[str, Any]
    volumes: list[dict[str, Any]] = field(default_factory=list)  # PVCs or DataVolumes, in disk order
    disk_claim_names: dict[str, str] = field(default_factory=dict)  # source disk label → claim name

    @property
    def name(self) -> str:
        return str(self.virtual_machine["metadata"]["name"])

    def all(self) -> list[dict[str, Any]]:
        """Volumes first, then the VM: the order to create them in."""
        return [*self.volumes, self.virtual_machine]


def vm_manifests(planned: PlannedVM, plan: Plan, options: SpecOptions | None = None) -> Manifests:
    options = options or SpecOptions()
    labels = vm_labels(plan, planned)
    make = data_volume if options.use_datavolumes else persistent_volume_claim
    volumes = [
        make(disk, plan.target_namespace, labels, options, shared=is_shared(source))
        for disk, source in zip(planned.disks, source_disks(planned), strict=True)
    ]
    return Manifests(
        virtual_machine=virtual_machine(planned, plan, options),
        volumes=volumes,
        disk_claim_names={d.label: d.claim_name for d in planned.disks},
    )


def dump(obj: dict[str, Any]) -> str:
    """Deterministic YAML: sorted keys, block style, no aliases."""
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, allow_unicode=True)


def dump_all(objs: list[dict[str, Any]]) -> str:
    return "---\n".join(dump(o) for o in objs)
