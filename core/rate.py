"""Transfer rates as users write them ("200MiB/s", "50MB/s", "1GiB/s", "800k") in bytes per second.

Binary units carry an ``i`` (KiB, MiB, GiB), decimal ones do not; ``/s`` is optional. Shared by
`migrate --max-rate` and the Migration controller's ``spec.maxRate``; callers turn the ``ValueError``
into their own one-line error.
"""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "ki": 1 << 10,
    "kib": 1 << 10,
    "mi": 1 << 20,
    "mib": 1 << 20,
    "gi": 1 << 30,
    "gib": 1 << 30,
}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*(?:/\s*s)?\s*$")


def parse_rate(text: str) -> float:
    match = _RATE.match(text)
    unit = _UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise ValueError(f"{text!r} is not a rate such as 200MiB/s, 50MB/s or 1GiB/s")
    rate = float(match.group(1)) * unit
    if rate <= 0:
        raise ValueError(f"{text!r} must be more than 0")
    return rate


def format_rate(rate: float) -> str:
    """Bytes per second as ``parse_rate`` reads it back exactly (``12345B/s``)."""
    return f"{int(rate)}B/s"
