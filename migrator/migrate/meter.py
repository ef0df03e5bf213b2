"""Bandwidth of a run: ``--max-rate`` parsed, one token bucket for every transfer, and a meter per VM.

The disk engine asks its ``rate_limiter`` once per chunk before reading it. Each VM's transfer
gets a ``VmMeter``: it counts the VM's bytes (the progress view reads them), stops the transfer
at that chunk when the VM's migration is cancelled or the run interrupted, and draws on the
run's one shared bucket (``converters.disks.ratelimit.TokenBucket``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from converters.disks.ratelimit import RateLimiter, TokenBucket, Unlimited
from core import rate
from core.errors import InputError, MigratorError


def parse_rate(text: str) -> float:
    """``--max-rate``: ``200MiB/s``, ``50MB/s``, ``1GiB/s``, ``800k`` → bytes per second (``core.rate``)."""
    try:
        return rate.parse_rate(text)
    except ValueError:
        raise InputError(f"--max-rate {text!r}: expected a rate such as 200MiB/s, 50MB/s or 1GiB/s") from None


def shared_bucket(rate: float | None) -> RateLimiter:
    return TokenBucket(rate) if rate else Unlimited()


SLICE = 1 << 20  # bytes drawn from the shared bucket at a time


class Stopped(MigratorError):
    """The transfer was stopped at a chunk boundary: cancelled, or the run interrupted."""


class VmMeter:
    """One VM's view of the shared bucket: bytes counted, a stop check before each chunk."""

    def __init__(self, shared: RateLimiter, stop_reason: Callable[[], str | None]) -> None:
        self.shared = shared
        self.stop_reason = stop_reason
        self.bytes = 0
        self.started: float | None = None  # when its first chunk was asked for
        self._lock = threading.Lock()

    def check(self) -> None:
        reason = self.stop_reason()
        if reason is not None:
            raise Stopped(reason)

    def acquire(self, nbytes: int) -> None:
        # Drawn in slices, looking for a stop between them: under a low --max-rate one chunk
        # waits for seconds, and a cancel must not wait for it.
        with self._lock:
            if self.started is None:
                self.started = time.monotonic()
        left = nbytes
        while left > 0:
            self.check()
            piece = min(left, SLICE)
            self.shared.acquire(piece)
            left -= piece
            with self._lock:
                self.bytes += piece

    def rate(self) -> float:
        """Bytes per second since its first chunk (0 before)."""
        with self._lock:
            if self.started is None:
                return 0.0
            return self.bytes / max(time.monotonic() - self.started, 1e-3)
