"""How fast a disk's stored data reads: a few seconds of it, through the same readers a transfer uses.

`migrator plan --measure-throughput` samples one disk per datastore with this, so the report's
estimates rest on a rate measured on the real path (HTTP datastore or local file), not a guess.
Only data is read: holes and zero runs cost nothing to copy, and would flatter the figure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from converters.disks.image import VirtualDisk
from converters.disks.sparse import ZERO

WINDOW = 64 << 20  # bytes of virtual disk looked at per step


class OpensDisk(Protocol):
    def open(self) -> VirtualDisk: ...


@dataclass(frozen=True)
class ReadSample:
    bytes_read: int
    seconds: float

    @property
    def bytes_per_second(self) -> float:
        return self.bytes_read / self.seconds if self.seconds > 0 else 0.0


def sample_read_rate(source: OpensDisk, seconds: float = 3.0, max_bytes: int = 1 << 30) -> ReadSample:
    """Read the disk's data from its start for about ``seconds`` (or ``max_bytes``), and time it."""
    disk = source.open()
    try:
        buffer = bytearray(WINDOW)
        view = memoryview(buffer)
        done = 0
        started = time.monotonic()
        position = 0
        while position < disk.size and done < max_bytes and time.monotonic() - started < seconds:
            end = min(position + WINDOW, disk.size)
            data = [segment for segment in disk.segments(position, end) if segment[2] != ZERO]
            if data:
                disk.read(data, view, position)
                done += sum(segment[1] for segment in data)
            position = end
        return ReadSample(done, time.monotonic() - started)
    finally:
        disk.close()
