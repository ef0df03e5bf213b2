"""A token bucket shared by every disk transfer of a run: one bandwidth limit for all of them.

The engine calls ``acquire(n)`` once per chunk, before reading the chunk's ``n`` bytes from
the source; the call returns when the bucket holds ``n`` tokens (bytes), sleeping outside
the lock. A chunk larger than the bucket is let through on credit (the bucket goes into
debt and later callers wait it off), so any chunk size works and the long-run rate stays
the configured one. Thread-safe: transfers of many VMs draw on the same bucket.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class RateLimiter(Protocol):
    def acquire(self, nbytes: int) -> None:
        """Block until ``nbytes`` may be read; may raise to stop the transfer (a cancel)."""


class TokenBucket:
    """``rate`` bytes per second, bursts of at most ``burst`` bytes (default: a quarter second's worth)."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else self.rate / 4
        if self.burst <= 0:
            raise ValueError("burst must be positive")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = 0.0  # start empty: the first second is not a free burst above the limit
        self._stamp = clock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def acquire(self, nbytes: int) -> None:
        if nbytes <= 0:
            return
        with self._lock:
            now = self._clock()
            self._refill(now)
            # Take the tokens now (possibly going into debt), then wait until the debt is paid:
            # callers are served in the order they arrive, and none can starve another.
            self._tokens -= nbytes
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


class Unlimited:
    """No limit: the default when no rate is given."""

    def acquire(self, nbytes: int) -> None:
        return None
