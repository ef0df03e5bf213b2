"""The guest's root filesystem, found cheaply from the partition tables, for the NIC-name pinning.

The pinning's appliance only needs the root mounted: libguestfs's full inspection (``guestfish -i``:
every filesystem probed, fstab parsed with Augeas) costs it about a third of its CPU under TCG. When the
disks' partition tables (``sfdisk --json``, read on the host from the raw images) show exactly one Linux
partition and no LVM or RAID, that partition is the root, as the appliance names it (``/dev/sda1``:
disks in order, ``sda``, ``sdb``...). Anything else (LVM, several Linux partitions, qcow2 images,
no partition table) gives None: the caller falls back to ``-i``. The partition's byte offset in its disk
comes with it: the pinning done from the host (``hostpin``) opens the filesystem there, without an appliance.
"""

from __future__ import annotations

import json
import re
import string
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters.guest.model import GuestDisk

# MBR partition types and GPT type GUIDs
_LINUX_MBR = {"83"}
_OPAQUE_MBR = {"8e", "fd", "5", "f", "85"}  # LVM, RAID, extended: the root may be inside: inspect instead
_LINUX_GPT = {
    "0fc63daf-8483-4772-8e79-3d69d8477de4",  # Linux filesystem data
    "4f68bce3-e8cd-4c2d-aa1f-a1ab5cdb8b6a",  # root (x86-64)
    "44479540-f297-41b2-9af7-d131d5f0458a",  # root (x86)
}
_OPAQUE_GPT = {
    "e6d6d379-f507-44c2-a23c-238f2a3df928",  # LVM
    "a19d880f-05fc-4d3b-a006-743f0f84911e",  # RAID
    "ca7d7ccb-63ed-4c53-861c-1742536059cc",  # LUKS
}


def appliance_device(disk_index: int, partition: int) -> str:
    return f"/dev/sd{string.ascii_lowercase[disk_index]}{partition}"


@dataclass(frozen=True)
class RootPartition:
    """The guest's root partition: which disk (in the request's order), its number, where it starts."""

    disk_index: int
    number: int
    offset: int | None = None  # bytes from the start of its disk; None when only its name is known

    @property
    def device(self) -> str:
        """As the appliance names it: ``/dev/sda1``."""
        return appliance_device(self.disk_index, self.number)


def root_from_tables(tables: list[dict[str, Any] | None]) -> RootPartition | None:
    """Pure: ``sfdisk --json`` documents (None: a disk without one), in disk order → the root partition, or None."""
    found: list[RootPartition] = []
    for index, table in enumerate(tables):
        if table is None:
            return None  # a disk without a partition table may be a filesystem (or an LVM PV) itself
        partitions = (table.get("partitiontable") or {}).get("partitions") or []
        device = (table.get("partitiontable") or {}).get("device") or ""
        for part in partitions:
            kind = str(part.get("type", "")).lower()
            if kind in _OPAQUE_MBR or kind in _OPAQUE_GPT:
                return None
            if kind in _LINUX_MBR or kind in _LINUX_GPT:
                match = re.search(r"(\d+)$", str(part.get("node", ""))[len(device) :])
                if match is None or index >= len(string.ascii_lowercase):
                    return None
                found.append(RootPartition(index, int(match.group(1)), _offset(table, part)))
    return found[0] if len(found) == 1 else None


def _offset(table: dict[str, Any], part: dict[str, Any]) -> int | None:
    """The partition's start in bytes: sfdisk counts in sectors of the table's ``sectorsize`` (512 by default)."""
    start, sector = part.get("start"), (table.get("partitiontable") or {}).get("sectorsize", 512)
    if not isinstance(start, int) or not isinstance(sector, int) or start < 0 or sector <= 0:
        return None
    return start * sector


def _table(disk: GuestDisk) -> dict[str, Any] | None:
    try:  # sfdisk: Debian's fdisk, which libguestfs depends on
        done = subprocess.run(["sfdisk", "--json", str(disk.path)], capture_output=True, text=True)
    except FileNotFoundError:
        return None
    if done.returncode != 0:
        return None
    try:
        data: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return None
    return data


def cheap_root(disks: tuple[GuestDisk, ...], root_choice: str = "first") -> RootPartition | None:
    """The root partition, when the plan or the partition tables say so cheaply."""
    named = re.fullmatch(r"/dev/sd([a-z])(\d+)", root_choice)
    readable = all(d.format == "raw" for d in disks) and all(Path(d.path).is_file() for d in disks)
    if named:  # the plan names it; its offset, from its disk's table when that can be read
        index, number = string.ascii_lowercase.index(named.group(1)), int(named.group(2))
        table = _table(disks[index]) if readable and index < len(disks) else None
        parts = ((table or {}).get("partitiontable") or {}).get("partitions") or []
        suffix = re.compile(rf"\D{number}$")
        offset = next((_offset(table or {}, p) for p in parts if suffix.search(str(p.get("node", "")))), None)
        return RootPartition(index, number, offset)
    if not readable:
        return None
    return root_from_tables([_table(d) for d in disks])
