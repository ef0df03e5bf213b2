"""Read the VM instance to run and find its disks on this host."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.errors import InputError, NotFoundError
from runtime.domain import ResolvedVolume, UnsupportedSpecError

DEFAULT_GRACE_SECONDS = 30


@dataclass(frozen=True)
class Instance:
    """A VM instance: its name, namespace and VMI spec (a VM is reduced to its template)."""

    name: str
    namespace: str
    spec: dict[str, Any]

    @property
    def grace_seconds(self) -> int:
        value = self.spec.get("terminationGracePeriodSeconds")
        return DEFAULT_GRACE_SECONDS if value is None else int(value)

    @property
    def start_paused(self) -> bool:
        return self.spec.get("startStrategy") == "Paused"


def instance_from_document(document: Any, origin: str) -> Instance:
    if not isinstance(document, dict) or not isinstance(document.get("spec"), dict):
        raise InputError(f"{origin}: not a VirtualMachine or VirtualMachineInstance (no spec)")
    kind = document.get("kind", "VirtualMachineInstance")
    metadata = document.get("metadata") or {}
    if kind == "VirtualMachine":
        template = document["spec"].get("template") or {}
        spec = template.get("spec")
        if not isinstance(spec, dict):
            raise InputError(f"{origin}: VirtualMachine has no spec.template.spec")
    elif kind == "VirtualMachineInstance":
        spec = document["spec"]
    else:
        raise InputError(f"{origin}: kind {kind!r} is neither VirtualMachine nor VirtualMachineInstance")
    name = metadata.get("name")
    if not name:
        raise InputError(f"{origin}: metadata.name is missing")
    return Instance(name=str(name), namespace=str(metadata.get("namespace") or "default"), spec=spec)


def load_instance(path: Path | None) -> Instance:
    """From a YAML/JSON file, or from the environment variable MIGRATOR_VMI_JSON."""
    if path is None:
        text = os.environ.get("MIGRATOR_VMI_JSON")
        if not text:
            raise InputError("no VM instance: give --vmi FILE or set MIGRATOR_VMI_JSON")
        try:
            return instance_from_document(json.loads(text), "MIGRATOR_VMI_JSON")
        except json.JSONDecodeError as error:
            raise InputError(f"MIGRATOR_VMI_JSON: not JSON: {error}") from None
    try:
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    except OSError as error:
        raise InputError(f"{path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not YAML/JSON (not UTF-8 text)") from None
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not YAML/JSON: {str(error).splitlines()[0]}") from None
    if len(documents) != 1:
        raise InputError(f"{path}: expected one VirtualMachine or VirtualMachineInstance, found {len(documents)}")
    return instance_from_document(documents[0], str(path))


def _image_at(path: Path) -> ResolvedVolume | None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISBLK(mode):
        return ResolvedVolume(path, "raw", block=True)
    if stat.S_ISREG(mode):
        return ResolvedVolume(path, _image_format(path))
    return None


def _image_format(path: Path) -> str:
    with path.open("rb") as image:
        return "qcow2" if image.read(4) == b"QFI\xfb" else "raw"


def resolve_volumes(spec: dict[str, Any], disk_root: Path) -> dict[str, ResolvedVolume]:
    """Volume name → its image: claim ``c`` → ``c.img``, ``c.qcow2``, ``c/disk.img``; volume ``v`` → ``v/disk.img``.

    A block device in the disk root (a ``volumeDevices`` PVC in a pod) is used as one.
    """
    resolved: dict[str, ResolvedVolume] = {}
    used = {disk.get("name") for disk in (spec.get("domain") or {}).get("devices", {}).get("disks") or []}
    for index, volume in enumerate(spec.get("volumes") or []):
        name = volume.get("name")
        if name not in used:
            continue
        if volume.get("persistentVolumeClaim"):
            claim = volume["persistentVolumeClaim"].get("claimName")
        elif volume.get("dataVolume"):
            claim = volume["dataVolume"].get("name")
        else:
            kinds = sorted(key for key in volume if key != "name")
            raise UnsupportedSpecError(f"spec.volumes[{index}]", f"volume source {kinds} is not supported here")
        candidates = [
            disk_root / f"{claim}.img",
            disk_root / f"{claim}.qcow2",
            disk_root / str(claim) / "disk.img",
            disk_root / str(name) / "disk.img",
            disk_root / str(claim),
            disk_root / str(name),
        ]
        for candidate in candidates:
            found = _image_at(candidate)
            if found is not None:
                resolved[name] = ResolvedVolume(found.path.resolve(), found.format, found.block)  # type: ignore[arg-type]
                break
        else:
            raise NotFoundError(f"volume {name!r} (claim {claim!r}): no disk image in {disk_root}")
    return resolved
