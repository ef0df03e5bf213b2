"""One wait/poll helper, instead of a hand-written deadline loop at every call site.

``wait_until(check, timeout=, interval=)`` calls ``check`` until it returns something truthy and
returns that; after ``timeout`` seconds without success it returns ``None`` and the caller raises
its own one-line error (each caller knows what it was waiting for). ``check`` is always called at
least once, and once more at the deadline, so a slow check never loses its last chance. An
exception raised by ``check`` (a phase that can never become the one awaited) ends the wait at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], *, timeout: float, interval: float) -> T | None:
    """The first truthy value ``check()`` returns within ``timeout`` seconds, else ``None``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        time.sleep(min(interval, remaining))
