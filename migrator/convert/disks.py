"""Disk jobs for one planned VM, run through the disk engine (converters.disks).

The engine owns the record of each transfer: a re-run skips a disk it finished (target
unchanged) without reading the source, and resumes one cut short. ``DIR/.migrator/`` holds
the rest of convert's state (the per-VM lock, the guest conversion's records).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from converters.disks import DiskJob, HttpSource, LocalSource, TarMemberSource, TransferResult, transfer_disks
from converters.disks.ratelimit import RateLimiter
from core import private
from core.confine import confined
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
        return self.disk.claim_name


def planned_transfers(planned: PlannedVM, out_dir: Path, fmt: str) -> list[PlannedTransfer]:
    if fmt not in FORMATS:
        raise InputError(f"unknown disk format {fmt!r}: expected raw or qcow2")
    transfers = []
    for disk in planned.disks:
        if not disk.source_file:
            raise DiskError(f"VM {planned.source_name}: {disk.label} has no backing file to copy")
        transfers.append(PlannedTransfer(disk, image_path(out_dir, disk.claim_name, fmt), fmt))
    return transfers


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
    make_source: Callable[[PlannedDisk], LocalSource | HttpSource | TarMemberSource],
    *,
    concurrency: int,
    progress: str,
    rate_limiter: RateLimiter | None = None,
    vm: str | None = None,
    verify: bool = False,
) -> list[TransferResult]:
    """Convert every transfer's disk; ``make_source(PlannedDisk)`` builds the engine source object.

    ``vm``: the VM's name, in every JSON progress event. ``verify``: re-read every image from
    storage and check it against the source's digests."""
    for transfer in transfers:
        try:
            private.private_dir(transfer.target.parent)
        except OSError as error:
            raise TargetError(f"cannot create {transfer.target.parent}: {_os_reason(error)}") from None
    jobs = [
        DiskJob(name=t.claim, source=make_source(t.disk), target=t.target, target_format=t.target_format)
        for t in transfers
    ]
    labels = {"vm": vm} if vm else None
    return transfer_disks(
        jobs,
        concurrency=concurrency,
        progress=progress,
        verify=verify,
        progress_labels=labels,
        rate_limiter=rate_limiter,
    )
