"""The guest's root filesystem, found cheaply from the partition tables, for the NIC-name pinning.

The pinning's appliance only needs the root mounted: libguestfs's full inspection (``guestfish -i``:
every filesystem probed, fstab parsed with Augeas) costs it about a third of its CPU under TCG. When the
disks' partition tables (``sfdisk --json``, read on the host from the raw images) show exactly one Linux
partition and no LVM or RAID, that partition is the root, as the appliance names it (``/dev/sda1``:
disks in order, ``sda``, ``sdb``...). Anything else (LVM, several Linux partitions, qcow2 images,
no partition table) gives None: the caller falls back to ``-i``.
"""

from __future__ import annotations

import json
import re
import string
import subprocess
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


def root_from_tables(tables: list[dict[str, Any] | None]) -> str | None:
    """Pure: ``sfdisk --json`` documents (None: a disk without one), in disk order → the root's device, or None."""
    found: list[str] = []
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
                found.append(appliance_device(index, int(match.group(1))))
    return found[0] if len(found) == 1 else None


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


def cheap_root(disks: tuple[GuestDisk, ...], root_choice: str = "first") -> str | None:
    """The root partition as the appliance names it, when the plan or the partition tables say so cheaply."""
    if re.fullmatch(r"/dev/sd[a-z]\d+", root_choice):
        return root_choice  # the plan names it
    if any(d.format != "raw" for d in disks) or not all(Path(d.path).is_file() for d in disks):
        return None
    return root_from_tables([_table(d) for d in disks])
