"""Disk jobs for one planned VM, run through the disk engine (converters.disks).

Finished disks are recorded under ``DIR/.migrator/``; a re-run skips them without reading
the disk again (the engine itself also resumes a disk cut short).
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters.disks import DiskJob, HttpSource, LocalSource, transfer_disks
from core.errors import DiskError, InputError, TargetError
from core.plan import PlannedDisk, PlannedVM

STATE_DIR = ".migrator"
FORMATS = ("raw", "qcow2")


def image_suffix(fmt: str) -> str:
    return ".img" if fmt == "raw" else ".qcow2"


def image_path(out_dir: Path, claim: str, fmt: str) -> Path:
    return out_dir / f"{claim}{image_suffix(fmt)}"


@dataclass(frozen=True)
class PlannedTransfer:
    disk: PlannedDisk
    target: Path
    target_format: str

    @property
    def claim(self) -> str:
        return self.disk.volume_name

    def record(self) -> dict[str, Any]:
        """What identifies this transfer in the state file: same record → same result."""
        return {
            "source_file": self.disk.source_file,
            "capacity_bytes": self.disk.capacity_bytes,
            "target": self.target.name,
            "format": self.target_format,
        }


def planned_transfers(planned: PlannedVM, out_dir: Path, fmt: str) -> list[PlannedTransfer]:
    if fmt not in FORMATS:
        raise InputError(f"unknown disk format {fmt!r}: expected raw or qcow2")
    transfers = []
    for disk in planned.disks:
        if not disk.source_file:
            raise DiskError(f"VM {planned.source_name}: {disk.label} has no backing file to copy")
        transfers.append(PlannedTransfer(disk, image_path(out_dir, disk.volume_name, fmt), fmt))
    return transfers


class ConvertState:
    """DIR/.migrator/convert-<vm>.json: the disks finished for a VM (never credentials)."""

    def __init__(self, out_dir: Path, vm: str) -> None:
        self.path = out_dir / STATE_DIR / f"convert-{vm}.json"
        try:
            self.data: dict[str, Any] = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            self.data = {"vm": vm, "disks": {}}

    def finished(self, transfer: PlannedTransfer) -> bool:
        entry = self.data["disks"].get(transfer.claim)
        if not entry or entry.get("record") != transfer.record():
            return False
        try:
            return transfer.target.stat().st_size == entry.get("size")
        except FileNotFoundError:
            return False

    def mark_finished(self, transfer: PlannedTransfer) -> None:
        size = transfer.target.stat().st_size
        self.data["disks"][transfer.claim] = {"record": transfer.record(), "size": size}
        self._save()

    def forget(self, transfer: PlannedTransfer) -> None:
        if self.data["disks"].pop(transfer.claim, None) is not None:
            self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n")
        os.replace(partial, self.path)


def resolve_local(base: Path, source_file: str) -> Path:
    """A VMX/OVF disk path: absolute, or relative to the descriptor's folder."""
    path = Path(source_file)
    return path if path.is_absolute() else (base / path)


def run_transfers(
    transfers: list[PlannedTransfer],
    make_source: Callable[[PlannedDisk], LocalSource | HttpSource],
    *,
    concurrency: int,
    progress: str,
    vm: str | None = None,
) -> None:
    """Convert every transfer's disk; ``make_source(PlannedDisk)`` builds the engine source object.

    ``vm``: the VM's name, in every JSON progress event."""
    for transfer in transfers:
        try:
            transfer.target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TargetError(f"cannot create {transfer.target.parent}: {error.strerror or error}") from None
    jobs = [
        DiskJob(name=t.claim, source=make_source(t.disk), target=t.target, target_format=t.target_format)
        for t in transfers
    ]
    labels = {"vm": vm} if vm else None
    transfer_disks(jobs, concurrency=concurrency, progress=progress, verify=True, progress_labels=labels)


def extract_ova_member(ova: Path, member: str, work_dir: Path) -> Path:
    """An OVA's disk as a local file (under ``DIR/.migrator/ova/``): the disk engine reads files, not tar members.

    Kept until the disk is converted, reused by a re-run when complete (same size as the member)."""
    target = work_dir / STATE_DIR / "ova" / Path(member).name
    try:
        with tarfile.open(ova, "r:*") as tar:
            try:
                info = tar.getmember(member)
            except KeyError:
                info = tar.getmember(f"./{member}")
            if target.exists() and target.stat().st_size == info.size:
                return target
            handle = tar.extractfile(info)
            if handle is None:
                raise DiskError(f"{ova}: member {member!r} is not a file")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            with handle, partial.open("wb") as out:
                shutil.copyfileobj(handle, out, 8 << 20)
            os.replace(partial, target)
    except KeyError:
        raise DiskError(f"{ova}: no member {member!r}") from None
    except (tarfile.TarError, OSError) as error:
        raise DiskError(f"{ova}: cannot extract {member!r}: {error}") from None
    return target


def remove_extracted(work_dir: Path) -> None:
    """Drop OVA members extracted for conversion once every disk is converted."""
    shutil.rmtree(work_dir / STATE_DIR / "ova", ignore_errors=True)
