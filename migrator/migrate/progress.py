"""What a `migrate` run shows while it runs: a live view (rich), JSON lines, or plain lines.

- ``live`` (a terminal): one row per VM in flight (step, bytes, rate, ETA) and an overall bar,
  with skip/step/outcome lines printed above them; the summary table at the end.
- ``json``: one object per line on stdout: ``{"event": "step"|"round"|"progress"|"vm"|"skipped"|"wave"|
  "summary", "time", ...}``: one ``step`` event per step change, one ``round`` event per precopy
  round of a warm VM started or done (with the next round's time) and at its cutover, one
  ``progress`` event per VM in flight per tick (a warm VM's with its rounds and next round's
  time), one ``vm`` event per finished VM, one ``summary`` event at the end.
- ``plain`` (a pipe): ``VM: line`` for every step change and outcome; the summary table at the end.

Views are called from the VMs' worker threads: each one serialises its own output.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from migrator.migrate.selection import Skip
from migrator.migrate.summary import HEADERS, Outcome, counts, exit_status, headline, plain_table, rows
from migrator.planning.table import human_bytes

MODES = ("auto", "live", "json", "plain", "pod")


@dataclass(frozen=True)
class VmProgress:
    vm: str
    step: str | None
    bytes_done: int
    bytes_total: int
    rate: float
    rounds: int | None = None  # a warm VM: precopy rounds done
    next_round_at: float | None = None  # a warm VM waiting for its next round (epoch seconds)

    @property
    def eta(self) -> float | None:
        left = self.bytes_total - self.bytes_done
        if left <= 0:
            return 0.0
        return left / self.rate if self.rate > 0 else None


@dataclass(frozen=True)
class RoundEvent:
    """A warm VM's precopy round ``number`` started or done (then ``next_at``, epoch seconds); number None: its
    cutover begun."""

    vm: str
    number: int | None
    status: str  # "started", "done" or "cutover"
    bytes_copied: int = 0
    seconds: float | None = None
    next_at: float | None = None


class View(Protocol):
    def skipped(self, skip: Skip) -> None: ...

    def wave(self, name: str | None, status: str, detail: str = "") -> None: ...

    def started(self, vm: str, bytes_total: int) -> None: ...

    def step(self, vm: str, step: str, status: str, detail: str | None = None) -> None: ...

    def line(self, vm: str, text: str) -> None: ...

    def round(self, event: RoundEvent) -> None:
        """A warm VM's precopy round started or done, or its cutover begun."""

    def tick(self, in_flight: Sequence[VmProgress]) -> None: ...

    def finished(self, outcome: Outcome) -> None: ...

    def close(self, outcomes: Sequence[Outcome]) -> None: ...


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _step_line(step: str, status: str, detail: str | None) -> str:
    return f"{step}: {status}" + (f" ({detail})" if detail else "")


def _clock(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _local_clock(epoch: float | None) -> str:
    return "?" if epoch is None else datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


def _round_line(event: RoundEvent) -> str:
    if event.number is None:
        return "precopy: cutover due, cutting over"
    if event.status == "started":
        return f"precopy round {event.number}: copying"
    took = f" in {event.seconds:.1f}s" if event.seconds is not None else ""
    then = f"; next round at {_clock(event.next_at)}" if event.next_at is not None else ""
    return f"precopy round {event.number}: done, {human_bytes(event.bytes_copied)}{took}{then}"


def _outcome_line(outcome: Outcome) -> str:
    text = outcome.outcome
    if outcome.downtime_seconds is not None:
        text += f", downtime {outcome.downtime_seconds:.1f}s"
    return text + (f": {outcome.error}" if outcome.error else "")


class PlainView:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.lock = threading.Lock()

    def _write(self, text: str) -> None:
        with self.lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def skipped(self, skip: Skip) -> None:
        self._write(f"skip {skip.vm}: {skip.reason}")

    def wave(self, name: str | None, status: str, detail: str = "") -> None:
        self._write(f"wave {name or '(no wave)'}: {status}" + (f" ({detail})" if detail else ""))

    def started(self, vm: str, bytes_total: int) -> None:
        self._write(f"{vm}: migrating")

    def step(self, vm: str, step: str, status: str, detail: str | None = None) -> None:
        self._write(f"{vm}: {_step_line(step, status, detail)}")

    def line(self, vm: str, text: str) -> None:
        self._write(f"{vm}: {text}")

    def round(self, event: RoundEvent) -> None:
        self._write(f"{event.vm}: {_round_line(event)}")

    def tick(self, in_flight: Sequence[VmProgress]) -> None:
        return None

    def finished(self, outcome: Outcome) -> None:
        self._write(f"{outcome.vm}: {_outcome_line(outcome)}")

    def close(self, outcomes: Sequence[Outcome]) -> None:
        if outcomes:
            self._write(plain_table(outcomes))
        self._write(headline(outcomes))


class JsonView:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.lock = threading.Lock()

    def _emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "time": _now(), **fields})
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def skipped(self, skip: Skip) -> None:
        self._emit("skipped", vm=skip.vm, reason=skip.reason)

    def wave(self, name: str | None, status: str, detail: str = "") -> None:
        self._emit("wave", wave=name, status=status, detail=detail or None)

    def started(self, vm: str, bytes_total: int) -> None:
        self._emit("step", vm=vm, step=None, status="queued-to-start", bytes_total=bytes_total)

    def step(self, vm: str, step: str, status: str, detail: str | None = None) -> None:
        self._emit("step", vm=vm, step=step, status=status, detail=detail)

    def line(self, vm: str, text: str) -> None:
        return None  # the step events carry what the lines say

    def round(self, event: RoundEvent) -> None:
        self._emit(
            "round",
            vm=event.vm,
            round=event.number,
            status=event.status,
            bytes=event.bytes_copied if event.status == "done" else None,
            seconds=None if event.seconds is None else round(event.seconds, 3),
            next_round_at=_clock(event.next_at),
        )

    def tick(self, in_flight: Sequence[VmProgress]) -> None:
        for p in in_flight:
            eta = p.eta
            warm = {} if p.rounds is None else {"precopy_rounds": p.rounds, "next_round_at": _clock(p.next_round_at)}
            self._emit(
                "progress",
                vm=p.vm,
                step=p.step,
                bytes_done=p.bytes_done,
                bytes_total=p.bytes_total,
                rate=round(p.rate),
                eta=None if eta is None else round(eta, 1),
                **warm,
            )

    def finished(self, outcome: Outcome) -> None:
        self._emit("vm", **outcome.to_dict())

    def close(self, outcomes: Sequence[Outcome]) -> None:
        self._emit("summary", counts=counts(outcomes), exit_status=exit_status(outcomes))


class LiveView:
    """rich: a progress row per VM in flight and an overall bar; lines scroll above them."""

    def __init__(self, total_bytes: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.console = Console()
        self.progress = Progress(
            TextColumn("{task.description}", style="bold"),
            TextColumn("{task.fields[step]}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.lock = threading.Lock()
        self.tasks: dict[str, Any] = {}
        self.finished_bytes = 0
        self.overall = self.progress.add_task("all VMs", total=max(total_bytes, 1), step="")
        self.progress.start()

    def skipped(self, skip: Skip) -> None:
        self.console.print(f"skip {skip.vm}: {skip.reason}", markup=False, highlight=False)

    def wave(self, name: str | None, status: str, detail: str = "") -> None:
        text = f"wave {name or '(no wave)'}: {status}" + (f" ({detail})" if detail else "")
        self.console.print(text, markup=False, highlight=False)

    def started(self, vm: str, bytes_total: int) -> None:
        with self.lock:
            self.tasks[vm] = self.progress.add_task(vm, total=max(bytes_total, 1), step="starting")

    def step(self, vm: str, step: str, status: str, detail: str | None = None) -> None:
        with self.lock:
            task = self.tasks.get(vm)
        if task is not None:
            self.progress.update(task, step=step if status == "started" else f"{step} {status}")
        if status == "failed":
            self.console.print(f"{vm}: {_step_line(step, status, detail)}", markup=False, highlight=False)

    def line(self, vm: str, text: str) -> None:
        return None  # the rows show where each VM stands; outcomes and failures are printed

    def round(self, event: RoundEvent) -> None:
        with self.lock:
            task = self.tasks.get(event.vm)
        if task is not None:
            shown = "precopy: cutover" if event.number is None else f"precopy round {event.number}"
            if event.status == "done":
                shown += f" done, next {_local_clock(event.next_at)}" if event.next_at is not None else " done"
            self.progress.update(task, step=shown)

    def tick(self, in_flight: Sequence[VmProgress]) -> None:
        done = self.finished_bytes
        with self.lock:
            for p in in_flight:
                task = self.tasks.get(p.vm)
                if task is not None:
                    self.progress.update(task, completed=p.bytes_done, total=max(p.bytes_total, p.bytes_done, 1))
                    if p.next_round_at is not None and p.step == "precopy":
                        clock = _local_clock(p.next_round_at)
                        self.progress.update(task, step=f"precopy: {p.rounds} round(s), next {clock}")
                done += p.bytes_done
        self.progress.update(self.overall, completed=done)

    def finished(self, outcome: Outcome) -> None:
        with self.lock:
            task = self.tasks.pop(outcome.vm, None)
            self.finished_bytes += outcome.bytes_moved
        if task is not None:
            self.progress.remove_task(task)
        self.console.print(f"{outcome.vm}: {_outcome_line(outcome)}", markup=False, highlight=False)

    def close(self, outcomes: Sequence[Outcome]) -> None:
        from rich.table import Table

        self.progress.stop()
        table = Table(*HEADERS, title=headline(outcomes))
        for row in rows(outcomes):
            table.add_row(*row)
        self.console.print(table)


def make_view(mode: str, total_bytes: int) -> View:
    if mode == "auto":
        mode = "live" if sys.stdout.isatty() else "plain"
    if mode == "live":
        return LiveView(total_bytes)
    if mode == "json":
        return JsonView()
    if mode == "pod":
        from migrator.migrate.podview import PodView

        return PodView()
    return PlainView()
