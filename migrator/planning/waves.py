"""Waves: groups of planned VMs migrated one after the other, each with an optional cutover window.

``migrator plan --wave NAME=GLOB [--wave-window NAME=START/END]`` builds them from the planned
VMs (``build_waves``); ``check_waves`` holds what the schema cannot say (known VMs, each VM in
one wave, a window that ends after it starts), for plans read from a file as well.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from datetime import datetime

from core.errors import InputError
from core.plan import CutoverWindow, Plan, PlannedVM, Wave

WAVE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


def parse_wave_flag(flag: str) -> tuple[str, str]:
    """``NAME=GLOB`` → (name, glob)."""
    name, sep, glob = flag.partition("=")
    if not sep or not name or not glob:
        raise InputError(f"--wave {flag!r}: expected NAME=GLOB (e.g. --wave first=web-*)")
    if not WAVE_NAME.match(name):
        raise InputError(f"--wave {flag!r}: a wave name is letters, digits, '.', '_' and '-'")
    return name, glob


def parse_time(text: str, what: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{what}: {text!r} is not an ISO 8601 time (e.g. 2026-12-05T22:00:00+00:00)") from None
    if when.tzinfo is None:
        raise InputError(f"{what}: {text!r} has no UTC offset (e.g. 2026-12-05T22:00:00+00:00, or Z)")
    return when


def parse_window_flag(flag: str) -> tuple[str, CutoverWindow]:
    """``NAME=START/END`` (either side may be empty) → (name, window)."""
    name, sep, span = flag.partition("=")
    start, slash, end = span.partition("/")
    if not sep or not slash or not name or not (start or end):
        raise InputError(f"--wave-window {flag!r}: expected NAME=START/END (ISO 8601; one side may be empty)")
    window = CutoverWindow(start=start or None, end=end or None)
    _check_window(name, window)
    return name, window


def _check_window(name: str, window: CutoverWindow) -> None:
    start = parse_time(window.start, f"wave {name}: window start") if window.start else None
    end = parse_time(window.end, f"wave {name}: window end") if window.end else None
    if start is not None and end is not None and end <= start:
        raise InputError(f"wave {name}: its cutover window ends ({window.end}) before it starts ({window.start})")


def build_waves(vms: Sequence[PlannedVM], flags: Sequence[str], window_flags: Sequence[str] = ()) -> list[Wave]:
    """Waves in the order their names first appear; a glob matching no planned VM is an error."""
    waves: dict[str, Wave] = {}
    owner: dict[str, str] = {}
    for flag in flags:
        name, glob = parse_wave_flag(flag)
        wave = waves.setdefault(name, Wave(name=name))
        matched = [v.source_name for v in vms if fnmatch.fnmatchcase(v.source_name, glob)]
        if not matched:
            raise InputError(f"--wave {flag!r}: no planned VM matches {glob!r}")
        for vm in matched:
            if owner.get(vm, name) != name:
                raise InputError(f"VM {vm} is in two waves: {owner[vm]} and {name}")
            owner[vm] = name
            if vm not in wave.vms:
                wave.vms.append(vm)
    for flag in window_flags:
        name, window = parse_window_flag(flag)
        if name not in waves:
            raise InputError(f"--wave-window {flag!r}: no wave {name!r} (give it with --wave {name}=GLOB)")
        waves[name].window = window
    return list(waves.values())


def check_waves(plan: Plan, origin: str = "plan") -> None:
    """Raise InputError naming the first wave that cannot be run as written."""
    known = {v.source_name for v in plan.vms}
    seen: dict[str, str] = {}
    names: set[str] = set()
    for wave in plan.waves:
        if wave.name in names:
            raise InputError(f"{origin}: two waves are named {wave.name}")
        names.add(wave.name)
        for vm in wave.vms:
            if vm not in known:
                raise InputError(f"{origin}: wave {wave.name} names VM {vm}, which is not in the plan")
            if vm in seen:
                raise InputError(f"{origin}: VM {vm} is in two waves: {seen[vm]} and {wave.name}")
            seen[vm] = wave.name
        if wave.window is not None:
            _check_window(wave.name, wave.window)
