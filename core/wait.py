"""One poll helper instead of hand-written deadline loops."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from core.errors import TargetError

T = TypeVar("T")


class WaitTimeout(TargetError):
    """What was waited for did not happen in time."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.1,
    what: str = "the condition",
    *,
    raise_on_timeout: bool = True,
) -> T | None:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy, and return that.

    After ``timeout`` seconds: raise :class:`WaitTimeout` naming ``what`` (or return the last falsy value when
    ``raise_on_timeout`` is false). The predicate is always called at least once, and once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if raise_on_timeout:
                raise WaitTimeout(f"{what} did not happen within {timeout:g} s")
            return value
        time.sleep(min(interval, remaining))
