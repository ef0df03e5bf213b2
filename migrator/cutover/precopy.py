"""Precopy rounds of a warm migration: snapshot, copy what changed since the last round, record.

One round (``run_round``): take a snapshot (``migrator-precopy-N``, or ``migrator-final`` once the
source is off), remove the previous round's snapshot, then per disk ask vSphere which areas changed
since the changeId the target image holds (``*`` the first time: the allocated areas, a full
copy) and copy exactly those into the image. What each step leaves is recorded in the state store
before anything relies on it: the snapshot as soon as it exists, a disk's new changeId as soon as
its copy is on disk (fsynced), the round when every disk is done. A re-run after kill -9 resumes
the round under way, its disks' copies resuming where they stopped (``converters.disks.delta``).

Read path: the disk file the snapshot's own configuration names (its disk backing), through the
datastore's ``/folder`` endpoint, as every other copy. The previous snapshot is removed before
reading, so the snapshot taken now is the only one, and its backing file is its frozen state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from converters.disks import HttpSource
from converters.disks.delta import copy_extents, normalized
from converters.disks.ratelimit import RateLimiter
from core.errors import MigratorError, SourceError
from core.plan import Plan, PlannedDisk, PlannedVM
from migrator.cutover.state import StateStore
from migrator.sources.vsphere.changes import ChangedAreas, ChangeIdRejected, SnapshotDisk, SnapshotRef

SNAPSHOT_PREFIX = "migrator-"
FINAL_SNAPSHOT = "migrator-final"
CBT_SNAPSHOT = "migrator-cbt-enable"

# Facts in the state store (one JSON object per migration; no credentials).
ROUNDS = "warm_rounds"  # [{round, kind, snapshot, snapshot_id, started_at, finished_at, bytes, seconds, disks}]
CHANGE_IDS = "warm_change_ids"  # claim → the changeId whose state the target image holds
KEPT_SNAPSHOT = "warm_snapshot"  # {id, name}: the snapshot of the last round, removed by the next
NEXT_PRECOPY = "warm_next_precopy_at"
CUTOVER_REQUESTED = "cutover_requested_at"
CUTOVER_AT = "warm_cutover_at"
WARM = "warm"  # {interval, cutover_at}: this migration is warm

# Called with (round, bytes of this disk's copy written so far) while a round copies; nothing is registered in
# production. The tests' fault injection (tests/faults: kill -9 in the middle of a delta) registers itself here.
CopyObserver = Callable[[int, int], None]
COPY_OBSERVERS: list[CopyObserver] = []


class ChangeTracking(Protocol):
    """What a round needs from the source (``migrator.sources.vsphere.changes.VSphereChanges``)."""

    def snapshots(self, vm: str) -> list[SnapshotRef]: ...

    def tools_running(self, vm: str) -> bool: ...

    def create_snapshot(self, vm: str, name: str, *, quiesce: bool) -> SnapshotRef: ...

    def remove_snapshot(self, vm: str, snapshot_id: str) -> bool: ...

    def snapshot_disks(self, snapshot_id: str) -> list[SnapshotDisk]: ...

    def enable_cbt(self, vm: str) -> None: ...

    def changed_areas(self, vm: str, snapshot_id: str, disk_key: int, start: int, change_id: str) -> ChangedAreas: ...

    def keep_alive(self) -> None:
        """Keep the source's session from ending while the VM waits for its next round (SourceError if it has
        ended; SourceUnreachableError if the server did not answer this time)."""


class DiskReader(Protocol):
    """Opens a snapshot's disk file for reading (the vSphere adapter's datastore HTTP access)."""

    def datastore_file_url(self, backing_file: str) -> str: ...

    def http_headers(self) -> dict[str, str]: ...

    def ssl_context(self) -> Any: ...


class WarmTarget(Protocol):
    """Where the rounds' copies land: an image on this machine per disk, then the VM's volume."""

    def prepare(self, plan: Plan, planned: PlannedVM) -> None:
        """Write or apply the VirtualMachine (not started) and its volumes. Idempotent."""

    def image(self, plan: Plan, planned: PlannedVM, disk: PlannedDisk) -> Path:
        """The raw image on this machine the rounds write into."""

    def publish(
        self, plan: Plan, planned: PlannedVM, disk: PlannedDisk, extents: list[tuple[int, int]], *, full: bool, key: str
    ) -> None:
        """Make the VM's volume hold what the image holds in ``extents`` (all of it when ``full``). Idempotent."""

    def convert_guest(
        self, plan: Plan, planned: PlannedVM, *, skip: bool, announce: Callable[[str], None]
    ) -> str | None:
        """Convert the guest on the images after the final delta; None: the cutover target does it on them."""


@dataclass
class Round:
    """One round as recorded (``warm_rounds`` fact)."""

    number: int
    kind: str  # precopy | final
    snapshot: str
    snapshot_id: str
    started_at: float
    finished_at: float | None = None
    bytes: int = 0
    disks: dict[str, dict[str, Any]] | None = None

    def record(self) -> dict[str, Any]:
        seconds = None if self.finished_at is None else self.finished_at - self.started_at
        return {
            "round": self.number,
            "kind": self.kind,
            "snapshot": self.snapshot,
            "snapshot_id": self.snapshot_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "bytes": self.bytes,
            "seconds": seconds,
            "disks": self.disks or {},
        }

    @classmethod
    def of(cls, data: dict[str, Any]) -> Round:
        return cls(
            number=int(data["round"]),
            kind=str(data["kind"]),
            snapshot=str(data["snapshot"]),
            snapshot_id=str(data["snapshot_id"]),
            started_at=float(data["started_at"]),
            finished_at=data.get("finished_at"),
            bytes=int(data.get("bytes") or 0),
            disks=dict(data.get("disks") or {}),
        )


@dataclass
class RoundContext:
    key: str  # the migration's key in the store (the source VM's name)
    plan: Plan
    planned: PlannedVM
    changes: ChangeTracking
    reader: DiskReader
    target: WarmTarget
    store: StateStore
    announce: Callable[[str], None]
    rate_limiter: RateLimiter | None = None  # `migrate --max-rate`: the run's one bucket, deltas included


def rounds(store: StateStore, key: str) -> list[Round]:
    return [Round.of(r) for r in store.fact(key, ROUNDS, [])]


def _save(ctx: RoundContext, current: Round) -> None:
    recorded = [r for r in rounds(ctx.store, ctx.key) if r.number != current.number]
    ctx.store.set_fact(ctx.key, ROUNDS, [r.record() for r in [*recorded, current]])


def changed_extents(
    changes: ChangeTracking, vm: str, snapshot_id: str, disk: SnapshotDisk, change_id: str
) -> list[tuple[int, int]]:
    """Every changed area of the disk: QueryChangedDiskAreas paged by startOffset up to the disk's end."""
    extents: list[tuple[int, int]] = []
    offset = 0
    while offset < disk.capacity_bytes:
        answer = changes.changed_areas(vm, snapshot_id, disk.key, offset, change_id)
        if answer.length <= 0 or answer.start != offset:
            raise SourceError(
                f"QueryChangedDiskAreas on {vm} {disk.label} answered [{answer.start}, +{answer.length}) "
                f"for startOffset {offset}"
            )
        extents.extend(answer.areas)
        offset = answer.start + answer.length
    return normalized(extents, disk.capacity_bytes)


def remove_migrator_snapshots(changes: ChangeTracking, vm: str, *, keep: str | None = None) -> list[str]:
    """Remove every snapshot this product took (named ``migrator-*``) but ``keep``; returns their names."""
    removed = []
    for snapshot in changes.snapshots(vm):
        if snapshot.name.startswith(SNAPSHOT_PREFIX) and snapshot.id != keep:
            if changes.remove_snapshot(vm, snapshot.id):
                removed.append(snapshot.name)
    return removed


def _begin(ctx: RoundContext, number: int, kind: str) -> Round:
    """The round under way (resumed, if its snapshot still exists), else a new round with a new snapshot."""
    vm = ctx.planned.source_name
    recorded = next((r for r in rounds(ctx.store, ctx.key) if r.number == number), None)
    live = {s.id for s in ctx.changes.snapshots(vm)}
    if recorded is not None and recorded.finished_at is None and recorded.snapshot_id in live:
        ctx.announce(f"round {number}: resuming from snapshot {recorded.snapshot}")
        return recorded
    kept = ctx.store.fact(ctx.key, KEPT_SNAPSHOT) or {}
    # A snapshot taken by a run that died before recording it, or of an abandoned round: not ours to keep.
    strays = remove_migrator_snapshots(ctx.changes, vm, keep=kept.get("id"))
    if strays:
        ctx.announce(f"round {number}: removed leftover snapshot(s) {', '.join(strays)}")
    name = FINAL_SNAPSHOT if kind == "final" else f"{SNAPSHOT_PREFIX}precopy-{number}"
    quiesce = kind == "precopy" and ctx.changes.tools_running(vm)
    taken = time.monotonic()
    snapshot = ctx.changes.create_snapshot(vm, name, quiesce=quiesce)
    current = Round(number, kind, name, snapshot.id, time.time(), disks={})
    _save(ctx, current)  # recorded at once: a crash from here on leaves a snapshot the store knows
    quiesced = " (quiesced)" if quiesce else ""
    ctx.announce(f"round {number}: snapshot {name}{quiesced} in {time.monotonic() - taken:.2f}s")
    return current


def run_round(ctx: RoundContext, number: int, kind: str) -> Round:
    """Run (or resume) round ``number``; returns it finished and recorded."""
    vm = ctx.planned.source_name
    current = _begin(ctx, number, kind)
    kept = ctx.store.fact(ctx.key, KEPT_SNAPSHOT) or {}
    if kept.get("id") and kept["id"] != current.snapshot_id:
        # Removed before reading: the new snapshot is then the only one, its backing file its frozen state.
        removing = time.monotonic()
        ctx.changes.remove_snapshot(vm, kept["id"])
        ctx.announce(
            f"round {number}: removed the previous snapshot {kept.get('name')} in {time.monotonic() - removing:.2f}s"
        )
    ctx.store.set_fact(ctx.key, KEPT_SNAPSHOT, {"id": current.snapshot_id, "name": current.snapshot})

    by_label = {d.label: d for d in ctx.changes.snapshot_disks(current.snapshot_id)}
    change_ids: dict[str, str] = dict(ctx.store.fact(ctx.key, CHANGE_IDS, {}) or {})
    disks = dict(current.disks or {})
    for planned_disk in ctx.planned.disks:
        claim = planned_disk.claim_name
        if (disks.get(claim) or {}).get("done"):
            continue
        disk = by_label.get(planned_disk.label)
        if disk is None:
            raise MigratorError(f"{vm}: snapshot {current.snapshot} has no {planned_disk.label}")
        if not disk.change_id:
            raise MigratorError(
                f"{vm}: {planned_disk.label} has no changeId: changed-block tracking is not active on it "
                "(the Critical concern cbt-disabled; `--enable-cbt` turns it on)"
            )
        entry = _copy_disk(ctx, current, planned_disk, disk, change_ids.get(claim))
        disks[claim] = entry
        current.disks = disks
        current.bytes = sum(int(d.get("bytes") or 0) for d in disks.values())
        _save(ctx, current)
        change_ids[claim] = entry["change_id"]
        ctx.store.set_fact(ctx.key, CHANGE_IDS, change_ids)  # only now may the next round rely on it
    current.finished_at = time.time()
    _save(ctx, current)
    seconds = current.finished_at - current.started_at
    ctx.announce(f"round {number}: {kind} copied {_human(current.bytes)} in {seconds:.1f}s")
    return current


def _copy_disk(
    ctx: RoundContext, current: Round, planned_disk: PlannedDisk, disk: SnapshotDisk, base: str | None
) -> dict[str, Any]:
    vm = ctx.planned.source_name
    claim = planned_disk.claim_name
    mode, note = ("delta", None) if base else ("full", None)
    asked = time.monotonic()
    try:
        extents = changed_extents(ctx.changes, vm, current.snapshot_id, disk, base or "*")
    except ChangeIdRejected as rejected:
        if base is None:
            raise
        mode = "full"
        note = f"changeId rejected by vSphere (tracking was reset), full copy instead: {rejected.message}"
        ctx.announce(f"round {current.number}: {claim}: {note}")
        extents = changed_extents(ctx.changes, vm, current.snapshot_id, disk, "*")
    ctx.announce(f"round {current.number}: {claim}: changed areas in {time.monotonic() - asked:.2f}s")
    image = ctx.target.image(ctx.plan, ctx.planned, planned_disk)
    source = HttpSource(ctx.reader.datastore_file_url(disk.file), ctx.reader.http_headers(), ctx.reader.ssl_context())
    key = f"{ctx.key}:round-{current.number}:{mode}:{disk.change_id}"
    progress = _observed(current.number)
    result = copy_extents(
        source, image, extents, key=key, fresh=mode == "full", progress=progress, rate_limiter=ctx.rate_limiter
    )
    ctx.target.publish(ctx.plan, ctx.planned, planned_disk, extents, full=mode == "full", key=key)
    detail = f"{mode} {_human(result.total_bytes)} in {len(extents)} extent(s), {result.seconds:.2f}s"
    if result.resumed_extents:
        detail += f", resumed after {result.resumed_extents} already written"
    ctx.announce(f"round {current.number}: {claim}: {detail}")
    return {
        "mode": mode,
        "bytes": result.total_bytes,
        "copied_now": result.copied_bytes,
        "extents": len(extents),
        "seconds": round(result.seconds, 3),
        "change_id": disk.change_id,
        "note": note,
        "done": True,
    }


def _observed(number: int) -> Callable[[int], None] | None:
    """The copy's progress callback when an observer is registered (none in production: no per-extent calls)."""
    if not COPY_OBSERVERS:
        return None

    def progress(copied: int) -> None:
        for observer in COPY_OBSERVERS:
            observer(number, copied)

    return progress


def _human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
