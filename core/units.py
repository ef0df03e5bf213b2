"""Sizes and rates as people type them: '150MiB/s', '1.5 GB/s', '200M'."""

from __future__ import annotations

import re

from core.errors import InputError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*(?:/\s*s(?:ec)?)?\s*$", re.IGNORECASE)


def parse_rate(text: str, what: str = "rate") -> float:
    """'150MiB/s' → 157286400.0 bytes per second; a bare number is bytes per second."""
    match = _RATE.match(str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS or float(match.group(1)) <= 0:
        raise InputError(f"{what} {text!r} is not a rate (e.g. 150MiB/s, 1GB/s, 50000000)")
    return float(match.group(1)) * _UNITS[unit]


def human_rate(bytes_per_second: float) -> str:
    return f"{bytes_per_second / 2**20:.0f} MiB/s"
