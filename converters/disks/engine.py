"""transfer_disks: copy many disks at once, chunk by chunk, sparse, verified and resumable.

Per disk a reader thread fetches the data a chunk holds (its allocation map says where;
holes are never fetched) while the writer writes the non-zero blocks, re-reads them from
the target, compares checksums and commits the chunk to the state record.
"""

from __future__ import annotations

import logging
import queue
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from converters.disks.image import VirtualDisk
from converters.disks.progress import DiskProgress, Progress
from converters.disks.sources import HttpSource, LocalSource
from converters.disks.sparse import ZERO, FlatExtent
from converters.disks.state import Plan, TransferState
from converters.disks.writer import Target
from core.errors import DiskError, MigratorError

log = logging.getLogger(__name__)

CHUNK = 16 << 20  # unit of the state record and of one read
BLOCK = 64 << 10  # zero-detection granularity (one VMDK grain)
READ_BUFFERS = 4
WRITERS = 2  # writes overlap: one writer alone waits on the page cache
EMPTY = "empty"
_ZB = bytes(BLOCK)
_RUN = struct.Struct("<QQ")


@dataclass(frozen=True)
class DiskJob:
    name: str
    source: LocalSource | HttpSource
    target: Path
    target_format: str = "raw"


@dataclass(frozen=True)
class TransferResult:
    name: str
    target: Path
    virtual_size: int
    bytes_transferred: int
    verified: bool
    skipped: bool
    seconds: float


def transfer_disks(
    jobs: Sequence[DiskJob],
    *,
    concurrency: int = 2,
    progress: str = "auto",
    verify: bool = True,
    compare: bool = False,
    fsync: bool = False,
    max_rate: float | None = None,
    chunk_size: int = CHUNK,
    progress_stream: TextIO | None = None,
    progress_labels: dict[str, str] | None = None,
) -> list[TransferResult]:
    """Transfer each job's disk into its target; raise DiskError (one line) if any failed.

    ``compare``: also run ``qemu-img compare`` source vs target for local sources.
    ``fsync``: flush the target to stable storage before recording it complete.
    ``max_rate``: bytes per second read from each source (bandwidth limit).
    ``progress_labels``: added to every JSON progress event (e.g. the VM's name).
    """
    if concurrency < 1:
        raise DiskError("concurrency must be at least 1")
    if chunk_size % BLOCK or chunk_size <= 0:
        raise DiskError(f"chunk size must be a multiple of {BLOCK}")
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise DiskError("two disk jobs have the same name")
    targets = [Target(job.target, job.target_format).path for job in jobs]
    if len(set(targets)) != len(targets):
        raise DiskError("two disk jobs write the same target")
    prog = Progress(progress, stream=progress_stream, labels=progress_labels)
    prog.start(0)
    options = _Options(verify, compare, fsync, max_rate, chunk_size)
    results: list[TransferResult | None] = [None] * len(jobs)
    errors: list[tuple[int, MigratorError]] = []
    try:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="disk") as pool:
            log.info("transferring %d disk(s), %d at a time", len(jobs), concurrency)
            futures = [pool.submit(_transfer_one, job, prog, options) for job in jobs]
            for i, future in enumerate(futures):
                try:
                    results[i] = future.result()
                except MigratorError as exc:
                    errors.append((i, exc))
                except Exception as exc:  # a bug or an unexpected OS error: still one line
                    errors.append((i, DiskError(f"disk {jobs[i].name}: {type(exc).__name__}: {exc}")))
    finally:
        prog.close()
    if errors:
        first = errors[0][1]
        more = f" (and {len(errors) - 1} more disk(s) failed)" if len(errors) > 1 else ""
        raise DiskError(f"{first.message}{more}")
    return [r for r in results if r is not None]


@dataclass(frozen=True)
class _Options:
    verify: bool
    compare: bool
    fsync: bool
    max_rate: float | None
    chunk: int


def _transfer_one(job: DiskJob, prog: Progress, opts: _Options) -> TransferResult:
    started = time.monotonic()
    target = Target(job.target, job.target_format)
    target.state_path.parent.mkdir(parents=True, exist_ok=True)
    had_record = target.state_path.exists()
    state = TransferState(target.state_path)
    try:
        identity = job.source.identity()
        known = state.plan()
        finished = state.completed_target()
        if (
            known is not None
            and known.source == identity
            and known.target_format == job.target_format
            and known.chunk_size == opts.chunk
            and finished is not None
            and target.identity() == finished
        ):
            log.info("disk %s: %s already complete in %s, skipped", job.name, job.source.describe(), target.path)
            dp = prog.disk(job.name, known.virtual_size)
            dp.finish("skipped")
            return TransferResult(job.name, target.path, known.virtual_size, 0, True, True, time.monotonic() - started)
        try:
            disk = job.source.open()
        except MigratorError as exc:
            raise DiskError(f"disk {job.name}: {exc.message}") from None
        log.info("disk %s: %s → %s (%s)", job.name, job.source.describe(), target.path, job.target_format)
        try:
            result = _copy(job, disk, target, state, identity, known, prog, opts, started)
        finally:
            disk.close()
        log.info("disk %s: done in %.1fs", job.name, time.monotonic() - started)
        return result
    except MigratorError:
        if not had_record and state.path.exists() and state.plan() is None:
            state.remove()  # failed before anything started: leave no trace
        raise
    finally:
        target.close()
        if state.path.exists():
            state.close()


def _copy(
    job: DiskJob,
    disk: VirtualDisk,
    target: Target,
    state: TransferState,
    identity: str,
    known: Plan | None,
    prog: Progress,
    opts: _Options,
    started: float,
) -> TransferResult:
    plan = Plan(identity, disk.size, opts.chunk, job.target_format)
    size = disk.size
    nchunks = (size + opts.chunk - 1) // opts.chunk
    done: dict[int, tuple[str, int]] = {}
    resumed = known == plan and state.completed_target() is None and target.reopen(size)
    verify_buf = bytearray(opts.chunk)
    if resumed:
        done = state.done()
        # Trust only chunks that still read back as recorded (a crash may have lost page cache).
        stale = [
            i for i, (digest, _n) in done.items() if _target_digest(target, i, opts.chunk, size, verify_buf) != digest
        ]
        if stale:
            state.forget(stale)
            for i in stale:
                del done[i]
    pending = [i for i in range(nchunks) if i not in done]
    _check_space(job, disk, target, pending, opts.chunk)
    if not resumed:
        state.reset(plan)
        target.create(size)
    dp = prog.disk(job.name, size)
    if prog.overall is not None:
        prog.overall.total += size
        prog.overall.refresh()
    dp.resume_at(sum(min(opts.chunk, size - i * opts.chunk) for i in done))
    fresh = not done
    try:
        transferred = _pipeline(disk, target, state, pending, dp, opts)
        if opts.compare and isinstance(job.source, LocalSource):
            _qemu_compare(job, disk, target)
        if opts.fsync and target.fd >= 0:
            target.sync()
        target.finalize(opts.verify)
        ident = target.identity()
        if ident is None:
            raise DiskError(f"disk {job.name}: target {target.path} vanished")
        state.complete(ident[0], ident[1], transferred)
    except BaseException as exc:
        dp.finish("failed")
        message = exc.message if isinstance(exc, MigratorError) else f"{type(exc).__name__}: {exc}"
        if not message.startswith(f"disk {job.name}:"):
            message = f"disk {job.name}: {message}"
        if fresh and not state.done():
            target.remove()
            state.remove()
            message += " (target removed)"
        else:
            message += " (partial target kept: run again to resume)"
        if isinstance(exc, MigratorError | OSError):
            raise DiskError(message) from None
        raise
    dp.finish("done")
    return TransferResult(job.name, target.path, size, transferred, opts.verify, False, time.monotonic() - started)


def _check_space(job: DiskJob, disk: VirtualDisk, target: Target, pending: list[int], chunk: int) -> None:
    free = target.free_bytes()
    if free is None or not _knows_allocation(disk):
        return  # block devices are sized; flat extents over HTTP cannot tell (ENOSPC is caught while writing)
    need = 0
    for i in pending:
        need += sum(n for _s, n, k, *_ in disk.segments(i * chunk, (i + 1) * chunk) if k != ZERO)
    if target.format == "qcow2":
        need *= 2  # the raw part and the qcow2 image coexist until the conversion ends
    if need > free:
        raise DiskError(
            f"disk {job.name}: not enough free space for {target.path}: needs {_human(need)}, {_human(free)} available"
        )


def _knows_allocation(disk: VirtualDisk) -> bool:
    layer: VirtualDisk | None = disk
    while layer is not None:
        for e in layer.extents:
            if isinstance(e, FlatExtent) and e.reader.data_ranges(0, 0) is None:
                return False
        layer = layer.parent
    return True


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} TiB"


def _pipeline(
    disk: VirtualDisk, target: Target, state: TransferState, pending: list[int], dp: DiskProgress, opts: _Options
) -> int:
    """One reader fetches chunks in order; WRITERS threads write, read back and record them."""
    chunk, size = opts.chunk, disk.size
    free: queue.Queue[bytearray] = queue.Queue()
    for _ in range(READ_BUFFERS):
        free.put(bytearray(chunk))
    ready: queue.Queue[tuple[int, bytearray | None, int] | None] = queue.Queue()
    stop = threading.Event()
    failures: list[BaseException] = []
    lock = threading.Lock()
    totals = {"transferred": 0}
    t0 = time.monotonic()

    def produce() -> None:
        try:
            for idx in pending:
                if stop.is_set():
                    break
                start = idx * chunk
                end = min(start + chunk, size)
                segments = disk.segments(start, end)
                fetched = sum(n for _s, n, k, *_ in segments if k != ZERO)
                if not fetched:
                    ready.put((idx, None, 0))
                    continue
                buf = free.get()
                if stop.is_set():
                    break
                view = memoryview(buf)[: end - start]
                disk.read(segments, view, start)
                view.release()
                ready.put((idx, buf, fetched))
        except BaseException as exc:  # handed over: the caller raises it
            failures.append(exc)
            stop.set()
        finally:
            for _ in range(WRITERS):
                ready.put(None)

    def consume() -> None:
        verify_buf = bytearray(chunk)
        try:
            while not stop.is_set():
                item = ready.get()
                if item is None:
                    return
                idx, buf, fetched = item
                start = idx * chunk
                n = min(chunk, size - start)
                written = 0
                runs: list[tuple[int, int]] = []
                digest = EMPTY
                if buf is None:
                    target.zero(start, n)
                else:
                    # Zero scan and checksum here, in the writers, so they run in parallel.
                    view = memoryview(buf)[:n]
                    runs = _nonzero_runs(buf, n)
                    digest = _digest(view, runs)
                    pos = 0
                    for a, b in runs:
                        if a > pos:
                            target.zero(start + pos, a - pos)
                        target.write(start + a, view[a:b])
                        written += b - a
                        pos = b
                    if pos < n:
                        target.zero(start + pos, n - pos)
                    view.release()
                if opts.verify and not _reads_back(target, start, n, buf, runs, verify_buf):
                    raise DiskError(
                        f"verification failed: chunk at byte {start} reads back differently from the target"
                    )
                if buf is not None:
                    free.put(buf)
                with lock:
                    state.record(idx, digest, written)
                    totals["transferred"] += fetched
                    dp.advance(n, fetched)
                    transferred = totals["transferred"]
                if opts.max_rate:
                    ahead = transferred / opts.max_rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        except BaseException as exc:
            failures.append(exc)
            stop.set()
        finally:
            free.put(bytearray(0))  # wake the reader if it waits for a buffer

    reader = threading.Thread(target=produce, name=f"read-{dp.name}", daemon=True)
    writers = [threading.Thread(target=consume, name=f"write-{dp.name}", daemon=True) for _ in range(WRITERS)]
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    free.put(bytearray(0))
    reader.join(timeout=120)
    if failures:
        raise failures[0]
    return totals["transferred"]


def _nonzero_runs(buf: bytearray, n: int) -> list[tuple[int, int]]:
    """Maximal runs of BLOCK-aligned blocks holding a non-zero byte, as (start, end) in buf."""
    runs: list[tuple[int, int]] = []
    run_start = -1
    for i in range(0, n, BLOCK):
        j = min(i + BLOCK, n)
        zero = buf.startswith(_ZB if j - i == BLOCK else _ZB[: j - i], i, j)
        if zero:
            if run_start >= 0:
                runs.append((run_start, i))
                run_start = -1
        elif run_start < 0:
            run_start = i
    if run_start >= 0:
        runs.append((run_start, n))
    return runs


def _digest(view: memoryview, runs: list[tuple[int, int]]) -> str:
    """The chunk's checksum for the state record: CRC-32 over its non-zero runs and their places."""
    if not runs:
        return EMPTY
    crc = 0
    for a, b in runs:
        crc = zlib.crc32(_RUN.pack(a, b), crc)
        crc = zlib.crc32(view[a:b], crc)
    return f"crc32:{crc:08x}"


def _reads_back(
    target: Target, start: int, n: int, buf: bytearray | None, runs: list[tuple[int, int]], verify_buf: bytearray
) -> bool:
    """Re-read the chunk from the target: the runs equal the source bytes, everything else reads as zeros."""
    view = memoryview(verify_buf)
    try:
        for a, b in runs:
            target.read_into(start + a, view[a:b])
            assert buf is not None
            if not buf.startswith(view[a:b], a):
                return False
        # Anything the target holds outside the runs must be zeros.
        extra: list[tuple[int, int]] = []
        for a, b in target.data_ranges(start, start + n):
            a, b = a - start, b - start
            pos = a
            for ra, rb in runs:
                if rb <= pos or ra >= b:
                    continue
                if ra > pos:
                    extra.append((pos, ra))
                pos = max(pos, rb)
            if pos < b:
                extra.append((pos, b))
        for a, b in extra:
            target.read_into(start + a, view[a:b])
            for i in range(a, b, BLOCK):
                j = min(i + BLOCK, b)
                if not verify_buf.startswith(_ZB[: j - i], i, j):
                    return False
        return True
    finally:
        view.release()


def _target_digest(target: Target, idx: int, chunk: int, size: int, buf: bytearray) -> str:
    """The checksum of what the target holds for chunk ``idx`` (same definition as the source side)."""
    start = idx * chunk
    n = min(chunk, size - start)
    ranges = target.data_ranges(start, start + n)
    if not ranges:
        return EMPTY
    view = memoryview(buf)
    try:
        if ranges != [(start, start + n)]:
            view[:n] = bytes(n)
        for a, b in ranges:
            target.read_into(a, view[a - start : b - start])
        return _digest(view[:n], _nonzero_runs(buf, n))
    finally:
        view.release()


def _qemu_compare(job: DiskJob, disk: VirtualDisk, target: Target) -> None:
    assert isinstance(job.source, LocalSource)
    args = ["qemu-img", "compare", "-U", "-F", "raw"]
    if disk.kind == "raw":
        args += ["-f", "raw"]
    result = subprocess.run([*args, str(job.source.path), str(target.data_path)], capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["differ"]
        raise DiskError(f"verification failed: qemu-img compare: {lines[-1].removeprefix('qemu-img: ')}")
