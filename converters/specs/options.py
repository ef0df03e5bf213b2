"""Choices the spec translation leaves to the user (CLI flags), with the product's defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpecOptions:
    # NIC model: True → e1000e, False → virtio, None → e1000e only when the guest is not virtio-ready.
    nic_compat: bool | None = None
    # Volumes as CDI DataVolumes (dataVolume.name) instead of plain PersistentVolumeClaims.
    use_datavolumes: bool = False
    # Force the guest's virtio readiness (e.g. after virt-v2v conversion); None: decide from the guest OS.
    virtio_ready: bool | None = None
    run_strategy: str = "Halted"  # until cutover starts it
    termination_grace_period_seconds: int = 180
    volume_mode: str = "Filesystem"  # or "Block"
    access_mode: str = "ReadWriteOnce"
    # CDI's default filesystem overhead: a Filesystem PVC must hold disk.img plus the file system's own use.
    filesystem_overhead: float = 0.055
    keep_empty_cdroms: bool = True
    # The guest OS as the conversion's inspection named it (libosinfo id "debian12", product name),
    # for the labels and annotations KubeVirt's UI reads.
    os_id: str | None = None
    os_name: str | None = None
    guest_converted_by: str | None = None  # e.g. "virt-v2v-in-place": the guest now drives virtio
