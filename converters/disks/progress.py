"""Progress of a transfer: tqdm bars (per disk and overall) on a terminal, or a JSON stream.

``json``: one object per line on stdout: ``{"time", "disk", "bytes_done", "bytes_total",
"bytes_transferred", "rate", "eta", "state"}`` plus the caller's labels (``"vm"``); ``time`` is
UTC ISO 8601, bytes are virtual disk bytes covered so far (holes included), ``bytes_transferred``
what was really read from the source.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from tqdm import tqdm

JSON_INTERVAL = 0.5


class Progress:
    def __init__(self, mode: str, *, stream: TextIO | None = None, labels: dict[str, str] | None = None) -> None:
        if mode not in ("auto", "json", "none", "tqdm"):
            from core.errors import InputError

            raise InputError(f"unknown progress mode {mode!r} (use auto, json or none)")
        if mode == "auto":
            mode = "tqdm" if sys.stderr.isatty() else "none"
        self.mode = mode
        self.stream = stream or sys.stdout
        self.lock = threading.Lock()
        self.labels = dict(labels or {})  # added to every JSON event, e.g. {"vm": "web01"}
        self.overall: tqdm | None = None
        self.total = 0
        self.position = 1

    def start(self, total: int) -> None:
        self.total = total
        if self.mode == "tqdm":
            from tqdm import tqdm  # only on a terminal: a transfer without bars starts faster

            self.overall = tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="all disks", position=0, leave=True
            )

    def disk(self, name: str, total: int) -> DiskProgress:
        with self.lock:
            position = self.position
            self.position += 1
        return DiskProgress(self, name, total, position)

    def close(self) -> None:
        if self.overall is not None:
            self.overall.close()


class DiskProgress:
    def __init__(self, parent: Progress, name: str, total: int, position: int) -> None:
        self.parent = parent
        self.name = name
        self.total = total
        self.done = 0
        self.transferred = 0
        self.started = time.monotonic()
        self.base = 0
        self.last_emit = 0.0
        self.bar: tqdm | None = None
        if parent.mode == "tqdm":
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, position=position, leave=True
            )

    def resume_at(self, done: int) -> None:
        """Bytes already on the target from an earlier run: counted, but not in the rate."""
        self.done = self.base = done
        if self.bar is not None:
            self.bar.update(done)
        if self.parent.overall is not None:
            self.parent.overall.update(done)
        self._emit("running", force=True)

    def advance(self, covered: int, transferred: int) -> None:
        self.done += covered
        self.transferred += transferred
        if self.bar is not None:
            self.bar.update(covered)
        if self.parent.overall is not None:
            with self.parent.lock:
                self.parent.overall.update(covered)
        self._emit("running")

    def finish(self, state: str) -> None:
        if state in ("done", "skipped"):
            if self.bar is not None and self.done < self.total:
                self.bar.update(self.total - self.done)
            self.done = self.total
        if self.bar is not None:
            self.bar.close()
        self._emit(state, force=True)

    def _emit(self, state: str, force: bool = False) -> None:
        if self.parent.mode != "json":
            return
        now = time.monotonic()
        if not force and now - self.last_emit < JSON_INTERVAL:
            return
        self.last_emit = now
        elapsed = max(now - self.started, 1e-6)
        rate = (self.done - self.base) / elapsed if state != "skipped" else 0.0
        left = self.total - self.done
        eta = round(left / rate, 1) if rate > 0 and state == "running" else (0.0 if left == 0 else None)
        line = json.dumps(
            {
                "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                **self.parent.labels,
                "disk": self.name,
                "bytes_done": self.done,
                "bytes_total": self.total,
                "bytes_transferred": self.transferred,
                "rate": round(rate),
                "eta": eta,
                "state": state,
            }
        )
        with self.parent.lock:
            self.parent.stream.write(line + "\n")
            self.parent.stream.flush()
