"""Allocation maps: which byte ranges of a disk hold data, and where they live.

A *segment* is ``(start, length, kind, reader, host, skip)`` over the virtual disk (or over
one extent, before it is shifted into place):

- ``ZERO``: reads as zeros; nothing to fetch or write.
- ``HOLE``: not allocated in this layer: the parent's bytes (zeros without a parent).
- ``RAW``: ``length`` bytes at ``host`` in ``reader``.
- ``GRAIN``: one deflate-compressed grain whose marker starts at ``host``; the segment is
  ``length`` bytes of the inflated grain from ``skip`` on.
"""

from __future__ import annotations

import zlib
from array import array
from collections.abc import Sequence

from converters.disks.sources import ByteReader
from converters.disks.vmdk import (
    GD_AT_END,
    SECTOR,
    SparseHeader,
    grain_directory_bytes,
    grain_table_bytes,
    parse_sparse_header,
)
from core.errors import DiskError

ZERO, HOLE, RAW, GRAIN = 0, 1, 2, 3
Segment = tuple[int, int, int, "ByteReader | None", int, int]
ZERO_BLOCK = bytes(1 << 20)


def merge(segments: Sequence[Segment]) -> list[Segment]:
    """Join neighbours: zeros with zeros, holes with holes, raw bytes contiguous in the same file."""
    out: list[Segment] = []
    for seg in segments:
        if seg[1] <= 0:
            continue
        if out:
            s0, l0, k0, r0, h0, _ = out[-1]
            if k0 == seg[2] and s0 + l0 == seg[0]:
                if k0 in (ZERO, HOLE):
                    out[-1] = (s0, l0 + seg[1], k0, None, 0, 0)
                    continue
                if k0 == RAW and r0 is seg[3] and h0 + l0 == seg[4]:
                    out[-1] = (s0, l0 + seg[1], RAW, r0, h0, 0)
                    continue
        out.append(seg)
    return out


def shift(segments: Sequence[Segment], delta: int) -> list[Segment]:
    return [(s + delta, n, k, r, h, sk) for (s, n, k, r, h, sk) in segments]


class FlatExtent:
    """Bytes 1:1 at ``base`` in a file (FLAT/VMFS extents, raw images). Local files report holes."""

    def __init__(self, reader: ByteReader, base: int, size: int, *, name: str) -> None:
        if reader.size >= 0 and reader.size < base + size:
            raise DiskError(
                f"{name}: extent {reader.name} is truncated: {reader.size} bytes, descriptor needs {base + size}"
            )
        self.reader = reader
        self.base = base
        self.size = size

    def segments(self, start: int, end: int) -> list[Segment]:
        ranges = self.reader.data_ranges(self.base + start, self.base + end)
        if ranges is None:
            return [(start, end - start, RAW, self.reader, self.base + start, 0)]
        out: list[Segment] = []
        pos = start
        for a, b in ranges:
            a -= self.base
            b -= self.base
            if a > pos:
                out.append((pos, a - pos, ZERO, None, 0, 0))
            out.append((a, b - a, RAW, self.reader, self.base + a, 0))
            pos = b
        if pos < end:
            out.append((pos, end - pos, ZERO, None, 0, 0))
        return out


class ZeroExtent:
    def __init__(self, size: int) -> None:
        self.size = size

    def segments(self, start: int, end: int) -> list[Segment]:
        return [(start, end - start, ZERO, None, 0, 0)]


class SparseExtent:
    """A hosted sparse extent (KDMV): grain directory → grain tables → grains, maybe compressed."""

    def __init__(self, reader: ByteReader, header: SparseHeader, *, name: str) -> None:
        self.reader = reader
        self.name = name
        if header.gd_offset == GD_AT_END:  # streamOptimized: the real header is the footer
            if reader.size < 3 * SECTOR:
                raise DiskError(f"{name}: truncated streamOptimized VMDK (no footer)")
            footer = bytearray(SECTOR)
            reader.read_into(reader.size - 2 * SECTOR, memoryview(footer))
            try:
                header = parse_sparse_header(bytes(footer), name=name)
            except DiskError:
                raise DiskError(f"{name}: truncated or corrupt streamOptimized VMDK (footer missing)") from None
            if header.gd_offset == GD_AT_END:
                raise DiskError(f"{name}: corrupt streamOptimized VMDK footer")
        self.header = header
        self.size = header.capacity * SECTOR
        self.grain = header.grain_bytes
        self.compressed = header.compressed
        self.markers = bool(header.flags & (1 << 17))
        self.table = self._load_tables()

    def _load_tables(self) -> dict[int, array]:
        """Grain directory index → its grain table, for the directory entries that have one.

        Memory follows the file, not the capacity it claims: a table read once is shared by every
        directory entry that names it, and entries without a table cost nothing."""
        h = self.header
        gd_bytes = grain_directory_bytes(h)
        gd_at = h.gd_offset * SECTOR
        if gd_at == 0 or gd_at + gd_bytes > self.reader.size:
            raise DiskError(f"{self.name}: truncated or corrupt VMDK (grain directory beyond end of file)")
        gd_raw = bytearray(gd_bytes)
        self.reader.read_into(gd_at, memoryview(gd_raw))
        gd = array("I")
        gd.frombytes(bytes(gd_raw))
        gt_bytes = grain_table_bytes(h)
        users: dict[int, list[int]] = {}
        for idx, off in enumerate(gd):
            if off:
                users.setdefault(off, []).append(idx)
        wanted = sorted(users)
        limit = (self.reader.size + SECTOR - 1) // SECTOR
        tables: dict[int, array] = {}
        # Grain tables usually sit back to back: fetch them in a few large reads.
        i = 0
        while i < len(wanted):
            j = i
            while j + 1 < len(wanted) and wanted[j + 1] * SECTOR - (wanted[j] * SECTOR + gt_bytes) < 65536:
                if (wanted[j + 1] - wanted[i]) * SECTOR > 16 << 20:
                    break
                j += 1
            span_start = wanted[i] * SECTOR
            span_end = wanted[j] * SECTOR + gt_bytes
            if span_end > self.reader.size:
                raise DiskError(f"{self.name}: truncated or corrupt VMDK (grain table beyond end of file)")
            buf = bytearray(span_end - span_start)
            self.reader.read_into(span_start, memoryview(buf))
            for off in wanted[i : j + 1]:
                at = off * SECTOR - span_start
                gt = array("I")
                gt.frombytes(bytes(buf[at : at + gt_bytes]))
                if gt and max(gt) >= max(limit, 2):  # entries 0 and 1 (hole, zeros) name no grain
                    raise DiskError(f"{self.name}: truncated or corrupt VMDK (grain beyond end of file)")
                for idx in users[off]:
                    tables[idx] = gt
            i = j + 1
        return tables

    def _entries(self, first: int, last: int) -> list[int]:
        """Grain table entries for grains first..last (0 where the directory has no table)."""
        per = self.header.gtes_per_gt
        out: list[int] = []
        g = first
        while g <= last:
            idx, at = divmod(g, per)
            n = min(per - at, last - g + 1)
            gt = self.table.get(idx)
            out.extend(gt[at : at + n] if gt is not None else [0] * n)
            g += n
        return out

    def segments(self, start: int, end: int) -> list[Segment]:
        g = self.grain
        first = start // g
        last = (end - 1) // g
        entries = self._entries(first, last)
        if not any(entries):
            return [(start, end - start, HOLE, None, 0, 0)]
        out: list[Segment] = []
        reader = self.reader
        if self.compressed:
            for i, entry in enumerate(entries):
                idx = first + i
                a = max(start, idx * g)
                b = min(end, (idx + 1) * g, self.size)
                if entry == 0:
                    out.append((a, b - a, HOLE, None, 0, 0))
                elif entry == 1:
                    out.append((a, b - a, ZERO, None, 0, 0))
                else:
                    out.append((a, b - a, GRAIN, reader, entry * SECTOR, a - idx * g))
            return merge(out)
        # Uncompressed: coalesce grains that are contiguous both in the disk and in the file.
        step = g // SECTOR
        stop = min(end, self.size)
        first_entry = entries[0]
        if first_entry > 1 and entries == list(range(first_entry, first_entry + len(entries) * step, step)):
            # All data, grains back to back in the file (as qemu-img and ESXi write them): one
            # segment without a Python step per grain (this is most of a data-filled disk).
            return [(start, stop - start, RAW, reader, first_entry * SECTOR + (start - first * g), 0)]
        run_kind = -1
        run_start = run_host = prev = 0
        for i, entry in enumerate(entries):
            kind = HOLE if entry == 0 else ZERO if entry == 1 else RAW
            if kind == run_kind and (kind != RAW or entry == prev + step):
                prev = entry
                continue
            pos = max(start, (first + i) * g)
            if run_kind >= 0:
                out.append((run_start, pos - run_start, run_kind, reader if run_kind == RAW else None, run_host, 0))
            run_kind, run_start, prev = kind, pos, entry
            run_host = entry * SECTOR + (pos - (first + i) * g) if kind == RAW else 0
        out.append((run_start, stop - run_start, run_kind, reader if run_kind == RAW else None, run_host, 0))
        return out

    def inflate(self, span: memoryview, at: int, skip: int, length: int, out: memoryview, *, where: int) -> None:
        """Inflate the grain whose marker (or stream) starts at ``span[at:]`` into ``out``."""
        if self.markers:  # GrainMarker: lba (8 bytes), compressed size (4 bytes), data
            size = int.from_bytes(span[at + 8 : at + 12], "little")
            if size == 0 or size > self.grain + 4096 or at + 12 + size > len(span):
                raise DiskError(f"{self.name}: corrupt compressed grain at byte {where}")
            data = span[at + 12 : at + 12 + size]
        else:
            data = span[at:]
        try:
            plain = zlib.decompressobj().decompress(data, self.grain)
        except zlib.error:
            raise DiskError(f"{self.name}: corrupt compressed grain at byte {where}") from None
        if len(plain) < skip + length:
            raise DiskError(f"{self.name}: corrupt compressed grain at byte {where} (short)")
        out[:length] = plain[skip : skip + length]
