"""The delta copier: given changed extents of a source disk, write them into an existing target image.

Warm migration copies a disk in full once, then only what changed (vSphere's changed-block
tracking names the extents). The source is read as the engine reads any disk (``LocalSource`` or
``HttpSource``: a VMDK of any kind over the datastore's ``/folder`` endpoint, ranged GETs), and the
bytes land at the same offsets of a raw image, which keeps the rest of its content.

Durable: a small journal beside the image (``.<image>.delta``) records, for one copy ``key``,
how many extents are on disk (fsynced before the journal says so, every 8 MiB). A re-run with the same key
resumes after them; a finished key copies nothing again. A ``fresh`` copy (a full copy) empties
the image first, once per key.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from converters.disks.ratelimit import RateLimiter
from converters.disks.sources import HttpSource, LocalSource
from converters.disks.sparse import ZERO
from core.errors import DiskError

PIECE = 8 << 20  # bytes read and written at a time
JOURNAL_EVERY = 8 << 20  # bytes copied between journal updates (each after an fsync): what a crash may copy again


@dataclass(frozen=True)
class DeltaResult:
    copied_bytes: int  # written by this call
    total_bytes: int  # the extents' total, whether written now or by an earlier, interrupted call
    resumed_extents: int  # extents an earlier call had already written
    seconds: float


def journal_path(image: Path) -> Path:
    return image.parent / f".{image.name}.delta"


def _fingerprint(extents: Sequence[tuple[int, int]], size: int) -> str:
    digest = hashlib.sha256(str(size).encode())
    for start, length in extents:
        digest.update(f"{start}:{length};".encode())
    return digest.hexdigest()[:32]


def _read_journal(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_journal(path: Path, data: dict[str, object]) -> None:
    # No fsync of its own: the bytes it counts are fsynced before it is written, and a journal update
    # lost with the machine only makes a re-run copy those extents again.
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(data))
    os.replace(partial, path)


def normalized(extents: Sequence[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Sorted, merged, clipped to the disk: what is really copied."""
    out: list[tuple[int, int]] = []
    for start, length in sorted(extents):
        end = min(start + length, size)
        if length <= 0 or start >= end:
            continue
        if out and start <= out[-1][0] + out[-1][1]:
            last_start, last_length = out[-1]
            out[-1] = (last_start, max(last_start + last_length, end) - last_start)
        else:
            out.append((start, end - start))
    return out


def copy_extents(
    source: LocalSource | HttpSource,
    image: Path,
    extents: Sequence[tuple[int, int]],
    *,
    key: str,
    fresh: bool = False,
    progress: Callable[[int], None] | None = None,
    rate_limiter: RateLimiter | None = None,
) -> DeltaResult:
    """Copy ``extents`` of ``source`` into the raw ``image`` at the same offsets.

    ``fresh``: the image is emptied (sparse, the disk's size) before the first extent of ``key``,
    so what no extent names reads as zeros: a full copy from the allocated extents. Otherwise the
    image must exist with the disk's size. ``progress`` gets the bytes written so far.
    ``rate_limiter`` is asked for each piece's bytes before they are read (a run's shared bandwidth
    bucket); it may raise to stop the copy there, the journal saying what is on disk.
    """
    started = time.monotonic()
    disk = source.open()
    try:
        size = disk.size
        todo = normalized(extents, size)
        total = sum(length for _start, length in todo)
        journal = journal_path(image)
        fingerprint = _fingerprint(todo, size)
        state = _read_journal(journal)
        resumed = 0
        if state.get("key") == key and state.get("extents") == fingerprint:
            resumed = int(state.get("done", 0))  # type: ignore[call-overload]
        else:
            if fresh:
                _empty(image, size)
            elif not image.exists():
                raise DiskError(f"{image}: no earlier copy to apply changes to")
            state = {"key": key, "extents": fingerprint, "done": 0, "size": size}
            _write_journal(journal, state)
        fd = _open_target(image, size)
        copied = 0
        try:
            buffer = bytearray(PIECE)
            since_journal = 0
            for index in range(resumed, len(todo)):
                start, length = todo[index]
                pos, end = start, start + length
                while pos < end:
                    n = min(PIECE, end - pos)
                    view = memoryview(buffer)[:n]
                    segments = disk.segments(pos, pos + n)
                    if not (fresh and all(segment[2] == ZERO for segment in segments)):  # an emptied image reads zeros
                        if rate_limiter is not None:
                            rate_limiter.acquire(n)
                        disk.read(segments, view, pos)
                        _write(fd, view, pos, image)
                    pos += n
                    copied += n
                    since_journal += n
                    if progress is not None:
                        progress(copied)
                last = index == len(todo) - 1
                if since_journal >= JOURNAL_EVERY or last:
                    # The bytes first, then the journal that says they are there. fdatasync: the image's size
                    # never changes here, so its mtime is the only metadata left behind (what a crash may lose).
                    os.fdatasync(fd)
                    state["done"] = index + 1
                    _write_journal(journal, state)
                    since_journal = 0
        finally:
            os.close(fd)
    finally:
        disk.close()
    return DeltaResult(
        copied_bytes=copied, total_bytes=total, resumed_extents=resumed, seconds=time.monotonic() - started
    )


def _empty(image: Path, size: int) -> None:
    try:
        image.parent.mkdir(parents=True, exist_ok=True)
        with image.open("wb") as f:
            f.truncate(size)
            f.flush()
            os.fsync(f.fileno())
    except OSError as error:
        raise DiskError(f"{image}: cannot create the target image: {error.strerror or error}") from None


def _open_target(image: Path, size: int) -> int:
    try:
        fd = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    except OSError as error:
        raise DiskError(f"{image}: cannot open the target image: {error.strerror or error}") from None
    actual = os.fstat(fd).st_size
    if actual != size:
        os.close(fd)
        raise DiskError(f"{image}: the target image has {actual} bytes, the source disk {size}")
    return fd


def _write(fd: int, data: memoryview, offset: int, image: Path) -> None:
    done = 0
    try:
        while done < len(data):
            done += os.pwritev(fd, [data[done : done + (256 << 10)]], offset + done)
    except OSError as error:
        if error.errno == 28:
            raise DiskError(f"{image}: no space left on the target's filesystem") from None
        raise DiskError(f"{image}: write failed: {error.strerror}") from None
