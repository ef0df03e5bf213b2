"""`migrator cutover --warm`: the warm options of the cutover command, and the warm context they build.

``--warm`` (or ``type: warm`` for the VM in the plan) runs ``migrator.cutover.warm.WARM_STEPS``;
``--precopy-interval`` (``5`` seconds, ``30s``, ``10m``, ``1h``; default 60 min),
``--cutover-at TIME`` (ISO 8601, or ``HH:MM`` today, local time), ``--enable-cbt``, and ``--now``:
alone, it asks the warm cutover of ``--vm`` running in another shell to cut over.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from core.errors import InputError
from migrator.cutover.precopy import WARM
from migrator.cutover.steps import CutoverContext
from migrator.cutover.warm import DEFAULT_INTERVAL, WarmContext, WarmOptions

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*$")


@dataclass(frozen=True)
class WarmRequest:
    warm: bool = False
    now: bool = False
    enable_cbt: bool = False
    interval: float = DEFAULT_INTERVAL
    cutover_at: float | None = None


def parse_duration(text: str) -> float:
    """``5`` → 5 s; ``30s``, ``10m``, ``1h``."""
    match = _DURATION.match(text)
    if not match:
        raise InputError(f"--precopy-interval {text!r}: expected seconds, or a number with s, m or h")
    value = float(match.group(1)) * {"s": 1, None: 1, "m": 60, "min": 60, "h": 3600}[match.group(2)]
    if value <= 0:
        raise InputError("--precopy-interval must be positive")
    return value


def parse_time(text: str, now: datetime | None = None) -> float:
    """ISO 8601 (``2026-12-01T15:00``, ``...Z``, ``...+01:00``; local time without an offset), or ``HH:MM`` today."""
    now = now or datetime.now().astimezone()
    try:
        if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", text.strip()):
            clock = datetime.strptime(text.strip(), "%H:%M:%S" if text.count(":") == 2 else "%H:%M")
            when = now.replace(hour=clock.hour, minute=clock.minute, second=clock.second, microsecond=0)
            if when < now - timedelta(minutes=1):
                raise InputError(f"--cutover-at {text}: that time has passed today; give a date (ISO 8601)")
            return when.timestamp()
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--cutover-at {text!r}: expected ISO 8601 (2026-12-01T15:00) or HH:MM") from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time, as a person types it
    return when.timestamp()


def warm_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The warm flags, gathered into one ``warm: WarmRequest`` argument."""

    @click.option("--warm", "warm_flag", is_flag=True, help="Copy while the source runs; cut over with the changes.")
    @click.option("--precopy-interval", metavar="DURATION", help="Between precopy rounds (5 = 5 s, 10m, 1h; 60m).")
    @click.option("--cutover-at", metavar="TIME", help="Warm: cut over once this time passes (ISO 8601 or HH:MM).")
    @click.option("--enable-cbt", is_flag=True, help="Warm: turn changed-block tracking on if it is off.")
    @click.option("--now", is_flag=True, help="Ask the running warm cutover of --vm to cut over now.")
    @functools.wraps(command)
    def wrapper(
        *args: Any,
        warm_flag: bool,
        precopy_interval: str | None,
        cutover_at: str | None,
        enable_cbt: bool,
        now: bool,
        **kwargs: Any,
    ) -> Any:
        if not warm_flag and (precopy_interval or cutover_at or enable_cbt) and not kwargs.get("plan_path"):
            raise InputError("--precopy-interval, --cutover-at and --enable-cbt are for a warm cutover: add --warm")
        request = WarmRequest(
            warm=warm_flag,
            now=now,
            enable_cbt=enable_cbt,
            interval=parse_duration(precopy_interval) if precopy_interval else DEFAULT_INTERVAL,
            cutover_at=parse_time(cutover_at) if cutover_at else None,
        )
        return command(*args, warm=request, **kwargs)

    return wrapper


def warm_context(
    ctx: CutoverContext,
    live: Any,
    request: WarmRequest,
    output_dir: Path | None,
    kubeconfig: str | None,
    namespace: str | None,
) -> WarmContext | None:
    """The warm context when this cutover is warm (--warm, the plan's `type: warm`, or a warm one recorded)."""
    recorded = ctx.store.get(ctx.key)
    warm_recorded = recorded is not None and recorded.status != "rolled_back" and WARM in recorded.facts
    if not (request.warm or ctx.planned.type == "warm" or warm_recorded):
        return None
    from migrator.cutover.targets.warm import ClusterWarmTarget, LocalWarmTarget
    from migrator.sources.vsphere.changes import VSphereChanges

    target = LocalWarmTarget(output_dir) if output_dir is not None else ClusterWarmTarget(kubeconfig, namespace)
    interval, cutover_at = request.interval, request.cutover_at
    if warm_recorded and not request.warm and recorded is not None:  # a re-run keeps the recorded schedule
        interval = float(recorded.facts[WARM].get("interval") or interval)
        cutover_at = cutover_at or recorded.facts[WARM].get("cutover_at")
    options = WarmOptions(interval=interval, cutover_at=cutover_at, enable_cbt=request.enable_cbt, now=request.now)
    return WarmContext(ctx, VSphereChanges(live), live, target, options)
