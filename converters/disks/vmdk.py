"""VMDK on-disk structures: the text descriptor and the hosted sparse extent header.

Pure parsing over bytes; no I/O. References: VMware "Virtual Disk Format 5.0" and qemu's
block/vmdk.c, which writes the files the tests use.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from core.errors import DiskError

SECTOR = 512
SPARSE_MAGIC = b"KDMV"  # hosted sparse extent (monolithicSparse, twoGbMaxExtentSparse, streamOptimized)
COWD_MAGIC = b"COWD"  # ESX vmfsSparse delta
GD_AT_END = 0xFFFFFFFFFFFFFFFF
FLAG_COMPRESSED = 1 << 16
FLAG_MARKERS = 1 << 17
COMPRESSION_DEFLATE = 1

# Extent types whose bytes map 1:1 onto the virtual disk, and those with grain tables.
FLAT_TYPES = {"FLAT", "VMFS", "VMFSRAW", "VMFSRDM"}
SPARSE_TYPES = {"SPARSE"}
ZERO_TYPES = {"ZERO"}
KNOWN_CREATE_TYPES = {
    "monolithicFlat",
    "monolithicSparse",
    "twoGbMaxExtentSparse",
    "twoGbMaxExtentFlat",
    "streamOptimized",
    "vmfs",
    "vmfsThin",
    "vmfsPreallocated",
    "vmfsEagerZeroedThick",
    "vmfsSparse",
    "seSparse",
    "vmfsRaw",
    "vmfsRawDeviceMap",
    "vmfsPassthroughRawDeviceMap",
    "custom",
    "fullDevice",
    "partitionedDevice",
}

_EXTENT_RE = re.compile(r'^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\w+)(?:\s+"([^"]*)"(?:\s+(\d+))?)?\s*$')
_KV_RE = re.compile(r'^([A-Za-z0-9_.]+)\s*=\s*"?([^"]*)"?\s*$')


class ConfinementError(DiskError):
    """A descriptor names a file outside its own folder (absolute, ``..``, or a symlink out): refused."""


@dataclass(frozen=True)
class Extent:
    access: str  # RW | RDONLY | NOACCESS
    sectors: int
    type: str  # FLAT, VMFS, SPARSE, ZERO, VMFSSPARSE, SESPARSE, ...
    filename: str | None
    offset: int  # in sectors, FLAT/VMFS only

    @property
    def size(self) -> int:
        return self.sectors * SECTOR


@dataclass
class Descriptor:
    create_type: str
    extents: list[Extent]
    cid: str | None = None
    parent_cid: str | None = None
    parent_hint: str | None = None
    ddb: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)  # every other key (changeTrackPath, ...)

    @property
    def virtual_size(self) -> int:
        return sum(e.size for e in self.extents)


def looks_like_descriptor(head: bytes) -> bool:
    text = head[:4096].lstrip()
    return text.startswith(b"# Disk DescriptorFile") or (b"createType" in text and b"\0" not in text[:1024])


def parse_descriptor(data: bytes, *, name: str) -> Descriptor:
    """Parse a descriptor; ``name`` only labels errors."""
    try:
        text = data.split(b"\0", 1)[0].decode("utf-8")
    except UnicodeDecodeError:
        raise DiskError(f"{name}: VMDK descriptor is not text") from None
    create_type: str | None = None
    extents: list[Extent] = []
    values: dict[str, str] = {}
    ddb: dict[str, str] = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        m = _EXTENT_RE.match(line)
        if m:
            access, sectors, etype, filename, offset = m.groups()
            etype = etype.upper()
            if etype != "ZERO" and not filename:
                raise DiskError(f"{name}: extent line without a file: {line!r}")
            extents.append(Extent(access, int(sectors), etype, filename, int(offset or 0)))
            continue
        kv = _KV_RE.match(line)
        if kv:
            key, value = kv.groups()
            if key.startswith("ddb."):
                ddb[key] = value
            else:
                values[key] = value
            continue
        raise DiskError(f"{name}: corrupt VMDK descriptor line: {line[:80]!r}")
    create_type = values.get("createType")
    if create_type is None:
        raise DiskError(f"{name}: VMDK descriptor has no createType")
    if create_type not in KNOWN_CREATE_TYPES:
        raise DiskError(f"{name}: unknown VMDK createType {create_type!r}")
    if not extents:
        raise DiskError(f"{name}: VMDK descriptor lists no extents")
    for extent in extents:
        if extent.filename is not None:
            check_extent_path(extent.filename, name=name)
    parent_cid = values.get("parentCID")
    hint = values.get("parentFileNameHint")
    if parent_cid and parent_cid.lower() == "ffffffff":
        hint = None
    if hint is not None:
        check_extent_path(hint, name=name)
    return Descriptor(create_type, extents, values.get("CID"), parent_cid, hint, ddb, values)


def check_extent_path(path: str, *, name: str) -> None:
    """Extents (and parents) must live in the descriptor's own folder: no absolute paths, no ``..``."""
    if not path or "\\" in path or "\0" in path:
        raise ConfinementError(f"{name}: invalid extent path {path!r}")
    pure = PurePosixPath(path)
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", path) or path.startswith("["):
        raise ConfinementError(
            f"{name}: extent path {path!r} is absolute: refused (extents must stay in the disk's folder)"
        )
    if any(part == ".." for part in pure.parts):
        raise ConfinementError(f"{name}: extent path {path!r} escapes the disk's folder: refused")


@dataclass(frozen=True)
class SparseHeader:
    version: int
    flags: int
    capacity: int  # sectors
    grain_size: int  # sectors
    descriptor_offset: int  # sectors
    descriptor_size: int  # sectors
    gtes_per_gt: int
    rgd_offset: int
    gd_offset: int
    overhead: int
    compress_algorithm: int

    @property
    def compressed(self) -> bool:
        return bool(self.flags & FLAG_COMPRESSED)

    @property
    def grain_bytes(self) -> int:
        return self.grain_size * SECTOR

    @property
    def gd_entries(self) -> int:
        per_gt = self.grain_size * self.gtes_per_gt
        return (self.capacity + per_gt - 1) // per_gt


_HEADER = struct.Struct("<4sIIQQQQIQQQB4sH")


def parse_sparse_header(data: bytes, *, name: str) -> SparseHeader:
    if len(data) < _HEADER.size:
        raise DiskError(f"{name}: truncated VMDK sparse header")
    (magic, version, flags, capacity, grain, d_off, d_size, gtes, rgd, gd, overhead, _unclean, _chars, comp) = (
        _HEADER.unpack_from(data)
    )
    if magic != SPARSE_MAGIC:
        raise DiskError(f"{name}: not a VMDK sparse extent (bad magic)")
    if version not in (1, 2, 3):
        raise DiskError(f"{name}: unsupported VMDK sparse version {version}")
    if grain < 1 or grain & (grain - 1) or grain > 2048 or gtes < 1 or gtes > 65536 or capacity == 0:
        raise DiskError(f"{name}: corrupt VMDK sparse header")
    if flags & FLAG_COMPRESSED and comp != COMPRESSION_DEFLATE:
        raise DiskError(f"{name}: unsupported VMDK compression {comp}")
    return SparseHeader(version, flags, capacity, grain, d_off, d_size, gtes, rgd, gd, overhead, comp)


def grain_directory_bytes(header: SparseHeader) -> int:
    return header.gd_entries * 4


def grain_table_bytes(header: SparseHeader) -> int:
    return header.gtes_per_gt * 4
