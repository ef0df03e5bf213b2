"""Disk jobs for one planned VM, run through the disk engine (converters.disks).

Finished disks are recorded under ``DIR/.migrator/``; a re-run skips them without reading
the disk again (the engine itself also resumes a disk cut short).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters.disks import DiskJob, HttpSource, LocalSource, transfer_disks
from core import private
from core.confine import confined
from core.errors import DiskError, InputError, TargetError
from core.plan import PlannedDisk, PlannedVM
from migrator.sources.ovf import check_member_name

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
        return self.disk.claim_name

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
        transfers.append(PlannedTransfer(disk, image_path(out_dir, disk.claim_name, fmt), fmt))
    return transfers


class ConvertState:
    """DIR/.migrator/convert-<vm>.json: the disks finished for a VM (never credentials)."""

    def __init__(self, out_dir: Path, vm: str) -> None:
        self.path = out_dir / STATE_DIR / f"convert-{vm}.json"
        try:
            self.data: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            self.data = {"vm": vm, "disks": {}}
        except (UnicodeDecodeError, json.JSONDecodeError):
            self.data = {"vm": vm, "disks": {}}  # a damaged record: the disks are copied again
        except OSError as error:
            raise TargetError(f"cannot use {out_dir}: {_os_reason(error)}") from None

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
        partial = self.path.with_suffix(".tmp")
        try:
            private.private_dir(self.path.parent)
            private.write_private(partial, json.dumps(self.data, indent=2, sort_keys=True) + "\n")
            os.replace(partial, self.path)
        except OSError as error:
            raise TargetError(f"cannot record progress in {self.path}: {error.strerror or error}") from None


def prepare_output(out_dir: Path) -> None:
    """Create the output folder and its state folder ``0700`` (one error line when that path cannot be one)."""
    try:
        private.private_dir(out_dir)
        private.private_dir(out_dir / STATE_DIR)
    except OSError as error:
        raise TargetError(f"cannot use {out_dir}: {_os_reason(error)}") from None


def _os_reason(error: OSError) -> str:
    if error.errno == errno.ENOTDIR:
        return "a part of that path is a file, not a folder"
    return error.strerror or type(error).__name__


def resolve_local(base: Path, source_file: str, datastores: Mapping[str, Path] | None = None) -> Path:
    """A VMX/OVF disk path, relative to the descriptor's folder or under it, or on a mapped ESXi datastore.

    Never outside that folder, symlinks resolved (InputError naming the path): a plan file names
    the disks it was made with, and a hand-edited or hostile one must not copy a host file."""
    return confined(base, source_file, "disk", datastores)


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
            private.private_dir(transfer.target.parent)
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
            check_member_name(ova, member)
            try:
                info = tar.getmember(member)
            except KeyError:
                info = tar.getmember(f"./{member}")
            if not info.isfile():
                raise DiskError(f"{ova}: member {member!r} is a link or special file, not a disk: refused")
            if target.exists() and target.stat().st_size == info.size:
                return target
            handle = tar.extractfile(info)
            if handle is None:
                raise DiskError(f"{ova}: member {member!r} is not a file")
            private.private_dir(target.parent)
            partial = target.with_name(target.name + ".partial")
            fd = private.open_fd(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC)
            with handle, os.fdopen(fd, "wb") as out:
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
