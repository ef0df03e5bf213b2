"""PersistentVolumeClaims and CDI DataVolumes that hold a VM's disks."""

from __future__ import annotations

import math
from typing import Any

from converters.specs.metadata import ANNOTATION_SOURCE_DISK, ANNOTATION_SOURCE_FILE
from converters.specs.options import SpecOptions
from core.plan import PlannedDisk

MIB = 1024 * 1024
GIB = 1024 * MIB
CDI_API_VERSION = "cdi.kubevirt.io/v1beta1"


def quantity(size_bytes: int) -> str:
    """A Kubernetes quantity, in Gi or Mi when exact, else plain bytes."""
    if size_bytes % GIB == 0:
        return f"{size_bytes // GIB}Gi"
    if size_bytes % MIB == 0:
        return f"{size_bytes // MIB}Mi"
    return str(size_bytes)


def pvc_request_bytes(capacity_bytes: int, options: SpecOptions) -> int:
    """Room for the disk: Block holds it exactly; a Filesystem PVC also holds the file system (CDI's rule)."""
    if options.volume_mode == "Block":
        return capacity_bytes
    needed = math.ceil(capacity_bytes / (1.0 - options.filesystem_overhead))
    return math.ceil(needed / MIB) * MIB


def _access_modes(shared: bool, options: SpecOptions) -> list[str]:
    return ["ReadWriteMany"] if shared else [options.access_mode]


def _metadata(planned: PlannedDisk, namespace: str, labels: dict[str, str], extra: dict[str, str]) -> dict[str, Any]:
    annotations = {ANNOTATION_SOURCE_DISK: planned.label, **extra}
    if planned.source_file:
        annotations[ANNOTATION_SOURCE_FILE] = planned.source_file
    return {"name": planned.claim_name, "namespace": namespace, "labels": dict(labels), "annotations": annotations}


def persistent_volume_claim(
    planned: PlannedDisk, namespace: str, labels: dict[str, str], options: SpecOptions, *, shared: bool = False
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": _access_modes(shared, options),
        "volumeMode": options.volume_mode,
        "resources": {"requests": {"storage": quantity(pvc_request_bytes(planned.capacity_bytes, options))}},
    }
    if planned.storage_class:
        spec["storageClassName"] = planned.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(planned, namespace, labels, {}),
        "spec": spec,
    }


def data_volume(
    planned: PlannedDisk, namespace: str, labels: dict[str, str], options: SpecOptions, *, shared: bool = False
) -> dict[str, Any]:
    """A DataVolume filled through CDI's upload proxy; its ``storage`` API adds the file-system overhead itself."""
    storage: dict[str, Any] = {
        "accessModes": _access_modes(shared, options),
        "volumeMode": options.volume_mode,
        "resources": {"requests": {"storage": quantity(planned.capacity_bytes)}},
    }
    if planned.storage_class:
        storage["storageClassName"] = planned.storage_class
    return {
        "apiVersion": CDI_API_VERSION,
        "kind": "DataVolume",
        # Keep the DataVolume (and its PVC) after the upload: the VM owns the disk, not CDI's garbage collector.
        "metadata": _metadata(planned, namespace, labels, {"cdi.kubevirt.io/storage.deleteAfterCompletion": "false"}),
        "spec": {"source": {"upload": {}}, "storage": storage},
    }
