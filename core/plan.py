"""The plan model: what `migrator plan` decides and `convert` / `cutover` carry out.

Typed dataclasses, no I/O. The plan file (YAML) is ``Plan.to_dict()``; its format is
documented in docs/plan-format.md with a JSON Schema beside this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.inventory import VM, plain_data

PLAN_API_VERSION = "migrator/v1"


class Severity(StrEnum):
    CRITICAL = "Critical"  # blocks migration unless --force names the concern
    WARNING = "Warning"
    INFORMATION = "Information"


class NetworkTarget(StrEnum):
    POD = "pod"  # the pod network, masquerade (at most one NIC per VM)
    MULTUS = "multus"  # a Multus NetworkAttachmentDefinition, bridge binding
    IGNORE = "ignore"  # the NIC is dropped


@dataclass
class Concern:
    id: str  # stable, kebab-case, e.g. "cbt-disabled"
    severity: Severity
    message: str  # one sentence a user understands


@dataclass
class NetworkMapping:
    source: str  # source network / port group name
    target: NetworkTarget
    multus: str | None = None  # "namespace/name" when target is multus


@dataclass
class StorageMapping:
    datastore: str
    storage_class: str
    max_volume_bytes: int | None = None  # when the storage class's limit is known


@dataclass
class ThroughputMeasurement:
    """What `migrator plan --measure-throughput` read from one disk of a datastore, and how fast."""

    datastore: str
    bytes_per_second: float
    sample_bytes: int
    seconds: float
    disk: str  # "VM / disk label": what was read
    measured_at: str  # ISO 8601


@dataclass
class PlannedDisk:
    label: str  # the source disk's label ("Hard disk 1")
    claim_name: str  # the PVC / DataVolume name on the target (RFC 1123): `<target>-disk-<n>`
    storage_class: str | None
    capacity_bytes: int
    transfer_bytes: int
    source_file: str | None  # "[datastore] path.vmdk", or a local path for VMX/OVF sources
    datastore: str | None
    # the source did not say how much the disk holds: transfer_bytes is the capacity, an upper bound
    transfer_bytes_upper_bound: bool = False


@dataclass
class PlannedNic:
    label: str
    mac: str | None
    source_network: str | None
    target: NetworkTarget
    multus: str | None = None
    interface_name: str = ""  # the interface/network name in the VirtualMachine spec


@dataclass
class PlannedVM:
    source_name: str
    target_name: str
    vm: VM
    disks: list[PlannedDisk] = field(default_factory=list)
    nics: list[PlannedNic] = field(default_factory=list)
    concerns: list[Concern] = field(default_factory=list)
    guest_root: str | None = None  # the guest's root device for virt-v2v --root (e.g. /dev/sda2); None: first found
    type: str = "cold"  # cold | warm: how `migrator cutover` moves it (warm: precopy with changed-block tracking)

    @property
    def blocked(self) -> bool:
        return any(c.severity is Severity.CRITICAL for c in self.concerns)

    @property
    def transfer_bytes(self) -> int:
        return sum(d.transfer_bytes for d in self.disks)

    @property
    def transfer_bytes_upper_bound(self) -> bool:
        """Some disk's allocation is unknown: ``transfer_bytes`` is at most this, not this."""
        return any(d.transfer_bytes_upper_bound for d in self.disks)

    def critical_ids(self) -> list[str]:
        return [c.id for c in self.concerns if c.severity is Severity.CRITICAL]


@dataclass
class Plan:
    name: str
    source: str  # the source string without credentials, e.g. vsphere://user@host:443/DC0
    target_namespace: str
    network_map: list[NetworkMapping] = field(default_factory=list)
    storage_map: list[StorageMapping] = field(default_factory=list)
    vms: list[PlannedVM] = field(default_factory=list)
    created: str | None = None  # ISO 8601
    hooks: dict[str, str] = field(default_factory=dict)  # "pre" / "post": commands cutover runs around the switch
    # SHA-256 of the source's TLS certificate when the plan was made (trust on first use); never "insecure"
    source_thumbprint: str | None = None
    throughput: list[ThroughputMeasurement] = field(default_factory=list)  # one per datastore measured

    def vm(self, name: str) -> PlannedVM | None:
        """Find a planned VM by source or target name."""
        return next((v for v in self.vms if name in (v.source_name, v.target_name)), None)

    @property
    def blocked(self) -> bool:
        return any(v.blocked for v in self.vms)

    def to_dict(self) -> dict[str, Any]:
        """What the plan file holds (``migrator.planning.planfile`` writes it)."""
        return {"apiVersion": PLAN_API_VERSION, "kind": "Plan", **plain_data(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return Plan(
            name=data["name"],
            source=data["source"],
            target_namespace=data["target_namespace"],
            network_map=[
                NetworkMapping(source=m["source"], target=NetworkTarget(m["target"]), multus=m.get("multus"))
                for m in data.get("network_map", [])
            ],
            storage_map=[StorageMapping(**m) for m in data.get("storage_map", [])],
            vms=[_planned_vm(v) for v in data.get("vms", [])],
            created=data.get("created"),
            hooks=dict(data.get("hooks") or {}),
            source_thumbprint=data.get("source_thumbprint"),
            throughput=[ThroughputMeasurement(**m) for m in data.get("throughput") or []],
        )


def _planned_vm(data: dict[str, Any]) -> PlannedVM:
    return PlannedVM(
        source_name=data["source_name"],
        target_name=data["target_name"],
        vm=VM.from_dict(data["vm"]),
        disks=[PlannedDisk(**d) for d in data.get("disks", [])],
        nics=[PlannedNic(**{**n, "target": NetworkTarget(n["target"])}) for n in data.get("nics", [])],
        concerns=[
            Concern(id=c["id"], severity=Severity(c["severity"]), message=c["message"])
            for c in data.get("concerns", [])
        ],
        guest_root=data.get("guest_root"),
        type=str(data.get("type") or "cold"),
    )
