"""One chunk of a disk: its digest, and the one place where its bytes are written to the target.

A chunk's digest is XXH3-64 over its whole content (holes as zeros), computed from the source
bytes while copying and recorded in the transfer record. The same definition is computed from
the target on resume (through the page cache) and by ``--verify`` (from storage, bypassing the
cache), so any byte that differs is found and named by its chunk's offset.

Writes: only the BLOCK-aligned blocks holding a non-zero byte reach the target (it stays
sparse). Bytes already in our memory (HTTP, compressed grains, qcow2) are written with
``pwritev``; bytes in local files (flat extents, raw images, uncompressed sparse grains) are
moved by the kernel (``copy_file_range``), read only through a mapping to digest and scan them.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Sequence
from functools import cache, lru_cache

import xxhash

from converters.disks.sources import LocalFile
from converters.disks.sparse import RAW, ZERO, Segment
from converters.disks.writer import DIRECT_ALIGN, Target

BLOCK = 64 << 10  # zero-detection granularity (one VMDK grain)
DIGEST_PREFIX = "xxh3:"
_ZB = bytes(BLOCK)
_ZERO_FEED = memoryview(bytes(4 << 20))
_PROBE = 32  # bytes looked at before a block is compared in full: data blocks differ at once

Reader = Callable[[int, memoryview], int]  # fill the view from an offset; bytes read


def _feed_zeros(h: xxhash.xxh3_64, n: int) -> None:
    while n > 0:
        step = min(n, len(_ZERO_FEED))
        h.update(_ZERO_FEED[:step])
        n -= step


@lru_cache(maxsize=8)
def zero_digest(n: int) -> str:
    """The digest of ``n`` zero bytes (a chunk that is all hole)."""
    h = xxhash.xxh3_64()
    _feed_zeros(h, n)
    return DIGEST_PREFIX + h.hexdigest()


def digest(view: memoryview) -> str:
    return DIGEST_PREFIX + xxhash.xxh3_64_hexdigest(view)


_ZERO_SPAN = 16 << 20  # bytes of the zero mapping that ``is_zero`` compares with at a time


@cache
def _memcmp() -> tuple[Callable[[int, int, int], int], int]:
    """libc's memcmp through ctypes, which lets go of the GIL during the call, and the address of a
    private anonymous mapping that reads as zeros (every page is the kernel's one zero page, so the
    comparison reads one stream, not two)."""
    import ctypes

    memcmp = ctypes.CDLL(None).memcmp
    memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    memcmp.restype = ctypes.c_int
    zeros = mmap.mmap(-1, _ZERO_SPAN, flags=mmap.MAP_PRIVATE)  # never written: stays the zero page
    anchor = (ctypes.c_char * _ZERO_SPAN).from_buffer(zeros)
    _KEEP.append((zeros, anchor))
    return memcmp, ctypes.addressof(anchor)


_KEEP: list[object] = []  # the zero mapping and its ctypes view live as long as the process


def _address(buf: bytearray) -> tuple[object, int]:
    """A ctypes view of ``buf`` (keep it while the address is used) and the address of its first byte."""
    import ctypes

    anchor = (ctypes.c_char * len(buf)).from_buffer(buf)
    return anchor, ctypes.addressof(anchor)


def _is_zero(memcmp: Callable[[int, int, int], int], zeros: int, addr: int, n: int) -> bool:
    pos = 0
    while pos < n:
        step = min(n - pos, _ZERO_SPAN)
        if memcmp(addr + pos, zeros, step):
            return False
        pos += step
    return True


def nonzero_runs(buf: bytearray | memoryview, n: int, base: int = 0) -> list[tuple[int, int]]:
    """Maximal runs of BLOCK-aligned blocks (aligned at ``base``) holding a non-zero byte, as (start, end).

    A buffer of ours is compared with zeros by libc's memcmp without the GIL (over HTTP most of a
    disk can be zeros: the readers go on meanwhile); a whole chunk of zeros is one comparison.
    Then one byte of every block is gathered by a single strided copy: a block whose first byte
    is not zero holds data, and only the others (rare in data, every block of a zero run) are
    compared whole, so a chunk of data costs no Python step per block."""
    whole = buf if isinstance(buf, bytearray) else None
    memcmp: Callable[[int, int, int], int] | None = None
    zeros = addr = 0
    if whole is not None:
        memcmp, zeros = _memcmp()
        anchor, addr = _address(whole)
        if _is_zero(memcmp, zeros, addr, n):
            return []
    view = memoryview(buf)

    def is_zero(i: int, j: int) -> bool:
        if whole is not None and memcmp is not None:
            return whole.startswith(_ZB[: min(_PROBE, j - i)], i) and not memcmp(addr + i, zeros, j - i)
        block = view[i:j]
        return block[:_PROBE] == _ZB[: min(_PROBE, j - i)] and block.tobytes() == _ZB[: j - i]

    empty: list[tuple[int, int]] = []  # blocks that read as zeros, in order
    first = min((-base) % BLOCK, n)  # a partial block before the first aligned one
    if first and is_zero(0, first):
        empty.append((0, first))
    probe = view[first:n:BLOCK].tobytes() if first < n else b""
    k = probe.find(0)
    while k >= 0:
        i = first + k * BLOCK
        j = min(i + BLOCK, n)
        if is_zero(i, j):
            empty.append((i, j))
        k = probe.find(0, k + 1)
    view.release()
    runs: list[tuple[int, int]] = []
    pos = 0
    for a, b in empty:
        if a > pos:
            runs.append((pos, a))
        pos = b
    if pos < n:
        runs.append((pos, n))
    return runs


def write_buffer(target: Target, start: int, buf: bytearray, n: int) -> tuple[str, int]:
    """Write a chunk held in memory (``buf[:n]``) at ``start``; returns (digest, bytes written)."""
    runs = nonzero_runs(buf, n)
    if not runs:
        target.zero(start, n)
        return zero_digest(n), 0
    view = memoryview(buf)[:n]
    written = 0
    pos = 0
    for a, b in runs:
        if a > pos:
            target.zero(start + pos, a - pos)
        target.write(start + a, view[a:b])
        written += b - a
        pos = b
    if pos < n:
        target.zero(start + pos, n - pos)
    result = digest(view), written
    view.release()
    return result


def kernel_copyable(target: Target, segments: Sequence[Segment]) -> bool:
    """Every byte with data is in a local regular file, and the target is a file: the kernel can copy."""
    if not target.is_file:
        return False
    for _s, _n, kind, reader, _h, _sk in segments:
        if kind == ZERO:
            continue
        if kind != RAW or not isinstance(reader, LocalFile) or not reader.is_regular:
            return False
    return True


def copy_segments(target: Target, segments: Sequence[Segment], start: int, n: int) -> tuple[str, int]:
    """Copy a chunk from local files (``kernel_copyable`` segments): digest and zero scan through a
    read-only mapping, non-zero blocks moved by ``copy_file_range``. Returns (digest, bytes written).

    A segment is digested whole first (XXH3 lets go of the GIL, and its reads fault the mapping
    in), then zero-scanned (one byte a block, already mapped), then each run of data is copied in
    one call. While one writer's copy holds the target, the other digests its next chunk on the
    other core, so the target waits for neither (1 MiB pieces, digested and copied by turns,
    cost a hand-over of the target and of the GIL per MiB: see BENCHMARKS.md)."""
    h = xxhash.xxh3_64()
    pos = start
    written = 0
    for s, length, kind, reader, host, _sk in segments:
        if s > pos:
            _feed_zeros(h, s - pos)
        pos = s + length
        if kind == ZERO:
            _feed_zeros(h, length)
            continue
        assert isinstance(reader, LocalFile)
        at = host - host % mmap.ALLOCATIONGRANULARITY
        mapping = mmap.mmap(reader.fd, host + length - at, prot=mmap.PROT_READ, offset=at)
        view = memoryview(mapping)[host - at :]
        try:
            h.update(view)
            runs = nonzero_runs(view, length, base=s)
        finally:
            view.release()
            mapping.close()
        for ra, rb in runs:
            target.copy_from(reader.fd, host + ra, s + ra, rb - ra)
            written += rb - ra
    if pos < start + n:
        _feed_zeros(h, start + n - pos)
    return DIGEST_PREFIX + h.hexdigest(), written


def stored_digest(
    read: Reader, ranges: Sequence[tuple[int, int]], start: int, n: int, buf: memoryview, align: int = 1
) -> tuple[str, int]:
    """The digest of what a target holds for the chunk [start, start+n), reading only its data
    ``ranges`` (holes are zeros) with ``read`` into ``buf``; offsets and lengths are rounded to
    ``align`` (O_DIRECT). Returns (digest, bytes read)."""
    if not ranges:
        return zero_digest(n), 0
    h = xxhash.xxh3_64()
    pos = start
    total = 0
    piece = (len(buf) - 2 * align) // align * align
    for a, b in ranges:
        if a > pos:
            _feed_zeros(h, a - pos)
        at = a
        while at < b:
            lo = at - at % align
            want = min(b, lo + piece)
            hi = -(-want // align) * align
            got = read(lo, buf[: hi - lo])
            if got < want - lo:
                raise OSError(f"target ends at byte {lo + got}, expected data up to {want}")
            h.update(buf[at - lo : want - lo])
            total += want - at
            at = want
        pos = b
    if pos < start + n:
        _feed_zeros(h, start + n - pos)
    return DIGEST_PREFIX + h.hexdigest(), total


def storage_buffer(chunk: int) -> mmap.mmap:
    """A page-aligned buffer for ``stored_digest`` reads of one chunk."""
    return mmap.mmap(-1, chunk + 2 * DIRECT_ALIGN)
