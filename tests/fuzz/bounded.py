"""The fuzzing property: a parser gives a result or one of our errors, within bounded memory."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any, TypeVar

from core.errors import MigratorError

T = TypeVar("T")
MAX_PEAK = 64 << 20  # bytes a parser may allocate for one small input (time is bounded by the deadline)


def bounded(parse: Callable[..., T], *args: Any, **kwargs: Any) -> T | MigratorError:
    """``parse(*args)``'s result, or the MigratorError it raised; any other exception fails the test."""
    tracemalloc.start()
    try:
        try:
            return parse(*args, **kwargs)
        except MigratorError as error:
            assert "\n" not in error.message, error.message  # one line, as the CLI prints it
            return error
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < MAX_PEAK, f"{parse.__name__} allocated {peak >> 20} MiB"


def mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """Apply (position, length to cut, bytes to insert) edits: the byte-level mutations of a fuzzer."""
    out = bytearray(data)
    for position, cut, insert in edits:
        at = position % (len(out) + 1)
        out[at : at + cut] = insert
    return bytes(out)
