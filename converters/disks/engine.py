"""transfer_disks: copy many disks at once, chunk by chunk, sparse, digested and resumable.

Per disk a reader thread fetches the data a chunk holds (its allocation map says where;
holes are never fetched) while two writer threads write its non-zero blocks (see chunks.py)
and commit the chunk, with the XXH3 digest of its source bytes, to the transfer record.
Local files are copied by the kernel. A resumed transfer trusts a recorded chunk only if the
target still holds its digest; ``verify`` re-reads the whole target from storage after an
fsync and compares every chunk with its digest.

Cancel (SIGINT, or SIGTERM turned into KeyboardInterrupt by the CLI): every worker stops at its
next chunk; what was committed stays committed, so a re-run resumes. ``transfer_disks`` returns
(raising ``TransferInterrupted``) within ``CANCEL_GRACE`` seconds.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from converters.disks import chunks
from converters.disks.chunks import BLOCK
from converters.disks.image import VirtualDisk
from converters.disks.progress import DiskProgress, Progress
from converters.disks.ratelimit import RateLimiter
from converters.disks.sources import HttpFile, HttpSource, LocalSource, TarMemberSource
from converters.disks.sparse import ZERO, FlatExtent
from converters.disks.state import TransferIdentity, TransferState
from converters.disks.writer import Target, aligned_buffer
from core.errors import DiskError, Interrupted, MigratorError

log = logging.getLogger(__name__)

CHUNK = 16 << 20  # unit of the state record and of one read
READ_BUFFERS = 4
WRITERS = 2  # writes overlap: one writer alone waits on the page cache
VERIFY_READERS = 3  # chunks re-read from storage at once by a verification
REMOTE_READERS = 2  # a disk over HTTP is read on two connections: one waits for its first byte, one streams
CANCEL_GRACE = 1.5  # seconds the workers get to reach their next chunk after a cancel
MAX_NOTICES = 5  # per disk: repaired chunks named one per line, then a count
HOLES_PER_COMMIT = 64  # chunks without data recorded in one commit (and one step of progress) at most

Source = LocalSource | HttpSource | TarMemberSource
Notify = Callable[[str], None]


class TransferInterrupted(Interrupted, DiskError):
    """The transfer was cancelled (Ctrl-C, SIGTERM); its state is recorded: a re-run resumes.

    An ``Interrupted``: a cutover records it as interrupted and never rolls back because of it."""


@dataclass(frozen=True)
class DiskJob:
    name: str
    source: Source
    target: Path
    target_format: str = "raw"


@dataclass(frozen=True)
class TransferResult:
    name: str
    target: Path
    virtual_size: int
    bytes_transferred: int
    verified: bool  # every chunk was re-read from storage and matched its digest
    skipped: bool  # complete from an earlier run, target unchanged: nothing copied
    seconds: float
    verified_bytes: int = 0  # bytes re-read from storage by the verification
    verify_seconds: float = 0.0
    repaired: tuple[int, ...] = ()  # offsets of chunks found damaged on the target and copied again


def _stderr_notice(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)


def transfer_disks(
    jobs: Sequence[DiskJob],
    *,
    concurrency: int = 2,
    progress: str = "auto",
    verify: bool = False,
    compare: bool = False,
    fsync: bool = False,
    max_rate: float | None = None,
    chunk_size: int = CHUNK,
    progress_stream: TextIO | None = None,
    rate_limiter: RateLimiter | None = None,
    notify: Notify = _stderr_notice,
    cancel: threading.Event | None = None,
    progress_labels: dict[str, str] | None = None,
) -> list[TransferResult]:
    """Transfer each job's disk into its target; raise DiskError (one line) if any failed.

    ``verify``: fsync, then re-read every target from storage (O_DIRECT) and compare each
    chunk with the digest recorded from the source; a completed target is verified too.
    ``compare``: also run ``qemu-img compare`` source vs target for local sources.
    ``fsync``: flush the target to stable storage before recording it complete.
    ``max_rate``: bytes per second read from each source (bandwidth limit).
    ``rate_limiter``: asked once per chunk before its bytes are read (one bucket shared by many runs).
    ``notify``: gets one line per repaired chunk (default: a warning on stderr).
    ``cancel``: set it to stop every transfer at its next chunk (as Ctrl-C does).
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
    cancel = cancel or threading.Event()
    prog = Progress(progress, stream=progress_stream, labels=progress_labels)
    prog.start(0)
    options = _Options(verify, compare, fsync, max_rate, chunk_size, cancel, notify, rate_limiter)
    results: list[TransferResult | None] = [None] * len(jobs)
    errors: dict[int, MigratorError] = {}
    slots = threading.BoundedSemaphore(concurrency)

    def run(i: int) -> None:
        with slots:
            if cancel.is_set():
                errors[i] = TransferInterrupted(f"disk {jobs[i].name}: interrupted before it started")
                return
            try:
                results[i] = _transfer_one(jobs[i], prog, options)
            except MigratorError as exc:
                errors[i] = exc
            except Exception as exc:  # a bug or an unexpected OS error: still one line
                errors[i] = DiskError(f"disk {jobs[i].name}: {type(exc).__name__}: {exc}")

    # Daemon threads, not an executor: an interrupted run must exit without waiting for a
    # worker stuck in a read (the interpreter joins executor threads at exit).
    workers = [threading.Thread(target=run, args=(i,), name=f"disk-{i}", daemon=True) for i in range(len(jobs))]
    try:
        log.info("transferring %d disk(s), %d at a time", len(jobs), concurrency)
        for w in workers:
            w.start()
        try:
            for w in workers:
                while w.is_alive():
                    w.join(0.2)
        except KeyboardInterrupt:
            cancel.set()
            deadline = time.monotonic() + CANCEL_GRACE
            for w in workers:
                w.join(max(0.0, deadline - time.monotonic()))
            raise TransferInterrupted(
                "interrupted: the chunks copied so far are recorded: run again to resume"
            ) from None
    finally:
        prog.close()
    if errors:
        ordered = [errors[i] for i in sorted(errors)]
        interrupted = [e for e in ordered if isinstance(e, TransferInterrupted)]
        if interrupted and cancel.is_set():
            raise TransferInterrupted("interrupted: the chunks copied so far are recorded: run again to resume")
        first = ordered[0]
        more = f" (and {len(ordered) - 1} more disk(s) failed)" if len(ordered) > 1 else ""
        raise DiskError(f"{first.message}{more}")
    return [r for r in results if r is not None]


@dataclass(frozen=True)
class _Options:
    verify: bool
    compare: bool
    fsync: bool
    max_rate: float | None
    chunk: int
    cancel: threading.Event = field(default_factory=threading.Event)
    notify: Notify = _stderr_notice
    rate_limiter: RateLimiter | None = None


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
            and finished is not None
            and target.identity() == finished
        ):
            log.info("disk %s: %s already complete in %s, skipped", job.name, job.source.describe(), target.path)
            dp = prog.disk(job.name, known.virtual_size)
            checked, seconds, verified = 0, 0.0, False
            if opts.verify and job.target_format == "raw" and target.reopen(known.virtual_size):
                checked, seconds = _verify(job, target, state, known.virtual_size, known.chunk_size, opts.cancel)
                verified = True
            dp.finish("skipped")
            return TransferResult(
                job.name,
                target.path,
                known.virtual_size,
                0,
                verified,
                True,
                time.monotonic() - started,
                checked,
                seconds,
            )
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
    known: TransferIdentity | None,
    prog: Progress,
    opts: _Options,
    started: float,
) -> TransferResult:
    plan = TransferIdentity(identity, disk.size, opts.chunk, job.target_format)
    size = disk.size
    nchunks = (size + opts.chunk - 1) // opts.chunk
    done: dict[int, tuple[str, int]] = {}
    repaired: list[int] = []
    # A complete record whose target changed since (a raw image edited in place) is resumed like an
    # interrupted one: only the chunks that no longer hold their digest are copied again.
    resumed = known == plan and target.reopen(size)
    if resumed:
        done = state.done()
        if any(not d.startswith(chunks.DIGEST_PREFIX) for d, _n in done.values()):
            resumed, done = False, {}  # a record from an older engine: start over
    checked, verify_seconds, verified = 0, 0.0, False
    if resumed:
        had_finished = state.completed_target() is not None
        state.reopen()
        if had_finished and opts.verify:
            # A verification never repairs in silence: a damaged chunk fails it (and is forgotten,
            # so that the next run copies it again).
            checked, verify_seconds = _verify(job, target, state, size, opts.chunk, opts.cancel)
            verified = True
            stale = []
        else:
            stale = _stale_chunks(target, done, opts.chunk, size)
        if stale:
            state.forget(stale)
            for i in stale:
                del done[i]
            if had_finished:
                repaired = [i * opts.chunk for i in stale]
                _notify_repairs(job.name, repaired, opts)
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
        transferred = _pipeline(disk, target, state, pending, dp, opts, reused=resumed)
        if opts.compare and isinstance(job.source, LocalSource):
            _qemu_compare(job, disk, target)
        if opts.fsync or opts.verify:
            target.sync()
        if opts.verify and (pending or not verified):
            checked, verify_seconds = _verify(job, target, state, size, opts.chunk, opts.cancel)
        target.finalize(opts.verify)
        ident = target.identity()
        if ident is None:
            raise DiskError(f"disk {job.name}: target {target.path} vanished")
        state.complete(ident[0], ident[1], transferred)
    except BaseException as exc:
        interrupted = isinstance(exc, TransferInterrupted)
        dp.finish("interrupted" if interrupted else "failed")
        message = exc.message if isinstance(exc, MigratorError) else f"{type(exc).__name__}: {exc}"
        if not message.startswith(f"disk {job.name}:"):
            message = f"disk {job.name}: {message}"
        if fresh and not state.done():
            target.remove()
            state.remove()
            message += " (target removed)"
        elif "run again" not in message:
            message += " (partial target kept: run again to resume)"
        if interrupted:
            raise TransferInterrupted(message) from None
        if isinstance(exc, MigratorError | OSError):
            raise DiskError(message) from None
        raise
    dp.finish("done")
    return TransferResult(
        job.name,
        target.path,
        size,
        transferred,
        opts.verify,
        False,
        time.monotonic() - started,
        checked,
        verify_seconds,
        tuple(repaired),
    )


def _notify_repairs(name: str, offsets: list[int], opts: _Options) -> None:
    for offset in offsets[:MAX_NOTICES]:
        opts.notify(
            f"disk {name}: chunk at byte {offset} no longer holds what was copied (digest mismatch): copying it again"
        )
    if len(offsets) > MAX_NOTICES:
        opts.notify(f"disk {name}: and {len(offsets) - MAX_NOTICES} more damaged chunk(s): copying them again")


def _stale_chunks(target: Target, done: dict[int, tuple[str, int]], chunk: int, size: int) -> list[int]:
    """Recorded chunks whose bytes on the target no longer match their digest (a crash may have
    lost page cache; a byte may have been changed since): read through the page cache."""
    buf = bytearray(chunk + 2)
    view = memoryview(buf)

    def read(offset: int, out: memoryview) -> int:
        target.read_into(offset, out)
        return len(out)

    stale = []
    try:
        for i, (recorded, _n) in sorted(done.items()):
            start = i * chunk
            n = min(chunk, size - start)
            try:
                found, _ = chunks.stored_digest(read, target.data_ranges(start, start + n), start, n, view)
            except (OSError, DiskError):
                found = ""
            if found != recorded:
                stale.append(i)
    finally:
        view.release()
    return stale


def _verify(
    job: DiskJob, target: Target, state: TransferState, size: int, chunk: int, cancel: threading.Event
) -> tuple[int, float]:
    """Re-read the target from storage (after fsync) and compare every chunk with its recorded digest.

    Returns (bytes read, seconds). A mismatch forgets the chunk (a re-run copies it again) and
    raises one line naming the chunk's offset."""
    t0 = time.monotonic()
    target.sync()
    reader = target.storage_reader()
    align = chunks.DIRECT_ALIGN if reader.direct else 1
    done = state.done()
    nchunks = (size + chunk - 1) // chunk
    with_data = [i for i in range(nchunks) if target.data_ranges(i * chunk, (i + 1) * chunk)]
    holes = set(range(nchunks)).difference(with_data)
    # A chunk the target holds no data for must have been recorded as zeros.
    bad = [i for i in sorted(holes) if done.get(i, ("",))[0] != chunks.zero_digest(min(chunk, size - i * chunk))]
    todo = iter(with_data)
    lock = threading.Lock()
    totals = [0]
    failures: list[BaseException] = []

    def check() -> None:
        buf = aligned_buffer(chunk + 2 * chunks.DIRECT_ALIGN)
        view = memoryview(buf)
        try:
            while not failures:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                if cancel.is_set():
                    raise TransferInterrupted(f"disk {job.name}: interrupted while verifying: run again to resume")
                start = i * chunk
                n = min(chunk, size - start)
                try:
                    ranges = target.data_ranges(start, start + n)
                    found, nread = chunks.stored_digest(reader.read_into, ranges, start, n, view, align)
                except OSError as exc:
                    raise DiskError(f"disk {job.name}: verification failed: chunk at byte {start}: {exc}") from None
                recorded = done.get(i)
                with lock:
                    totals[0] += nread
                    if recorded is None or recorded[0] != found:
                        bad.append(i)
        except BaseException as exc:
            failures.append(exc)
        finally:
            view.release()
            buf.close()

    # Several reads in flight (as many as the storage takes at once): the verification keeps
    # up with a plain sequential read (dd iflag=direct) although it also digests every byte.
    threads = [threading.Thread(target=check, name=f"verify-{job.name}", daemon=True) for _ in range(VERIFY_READERS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        reader.close()
    if failures:
        raise failures[0]
    total = totals[0]
    bad.sort()
    if bad:
        state.reopen()
        state.forget(bad)
        more = f" (and {len(bad) - 1} more chunk(s))" if len(bad) > 1 else ""
        raise DiskError(
            f"disk {job.name}: verification failed: chunk at byte {bad[0] * chunk} of {target.path} "
            f"differs from the source's digest{more}: run again to copy it again"
        )
    return total, time.monotonic() - t0


def _check_space(job: DiskJob, disk: VirtualDisk, target: Target, pending: list[int], chunk: int) -> None:
    free = target.free_bytes()
    if free is None or not _knows_allocation(disk):
        return  # block devices are sized; flat extents over HTTP cannot tell (ENOSPC is caught while writing)
    factor = 2 if target.format == "qcow2" else 1  # the raw part and the qcow2 image coexist until the conversion ends
    if len(pending) * chunk * factor <= free:
        return  # fits even if every pending byte holds data: no need to read the map (9 ms for a 16 GiB VMDK)
    need = 0
    for i in pending:
        need += sum(n for _s, n, k, *_ in disk.segments(i * chunk, (i + 1) * chunk) if k != ZERO)
    need *= factor
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
    disk: VirtualDisk,
    target: Target,
    state: TransferState,
    pending: list[int],
    dp: DiskProgress,
    opts: _Options,
    *,
    reused: bool,
) -> int:
    """One reader plans (and, unless the kernel copies them, fetches) chunks in order; WRITERS
    threads write and record them. ``reused``: the target holds an earlier run's bytes, each
    pending chunk is cleared before it is written."""
    chunk, size = opts.chunk, disk.size
    free: queue.Queue[bytearray] = queue.Queue()
    allocated = [0]  # read buffers are made when first needed: chunks the kernel copies need none
    # (chunk index, its bytes or None, bytes fetched, None or the segments the kernel copies), or a run of
    # chunks that hold no data (their indices): those are recorded in one commit (a 1 TiB disk
    # holding 100 GiB has 58,000 of them, each commit a pause of the target's writes).
    ready: queue.Queue[tuple[int, bytearray | None, int, list | None] | list[int] | None] = queue.Queue()
    stop = threading.Event()
    failures: list[BaseException] = []
    lock = threading.Lock()
    totals = {"transferred": 0}
    t0 = time.monotonic()

    def halted() -> bool:
        return stop.is_set() or opts.cancel.is_set()

    def take_buffer() -> bytearray:
        try:
            return free.get_nowait()
        except queue.Empty:
            with lock:
                if allocated[0] < READ_BUFFERS:
                    allocated[0] += 1
                    return bytearray(chunk)
            return free.get()

    nreaders = REMOTE_READERS if _remote(disk) else 1
    finished_readers = [0]

    def produce(share: list[int]) -> None:
        holes: list[int] = []
        try:
            for idx in share:
                if halted():
                    break
                start = idx * chunk
                end = min(start + chunk, size)
                segments = disk.segments(start, end)
                fetched = sum(n for _s, n, k, *_ in segments if k != ZERO)
                if not fetched:
                    holes.append(idx)
                    if len(holes) >= HOLES_PER_COMMIT:
                        ready.put(holes)
                        holes = []
                    continue
                if holes:
                    ready.put(holes)
                    holes = []
                if opts.rate_limiter is not None:
                    opts.rate_limiter.acquire(fetched)
                if chunks.kernel_copyable(target, segments):
                    ready.put((idx, None, fetched, segments))
                    continue
                buf = take_buffer()
                if halted():
                    break
                view = memoryview(buf)[: end - start]
                disk.read(segments, view, start)
                view.release()
                ready.put((idx, buf, fetched, None))
            if holes and not halted():
                ready.put(holes)
        except BaseException as exc:  # handed over: the caller raises it
            failures.append(exc)
            stop.set()
        finally:
            with lock:
                finished_readers[0] += 1
                last = finished_readers[0] == nreaders
            if last:
                for _ in range(WRITERS):
                    ready.put(None)

    def consume() -> None:
        try:
            while not halted():
                item = ready.get()
                if item is None or halted():
                    return
                if isinstance(item, list):
                    _record_holes(item, target, state, dp, lock, chunk, size, reused)
                    continue
                idx, buf, fetched, segments = item
                start = idx * chunk
                n = min(chunk, size - start)
                if reused:
                    target.clear(start, n)
                if buf is not None:
                    digest, written = chunks.write_buffer(target, start, buf, n)
                    free.put(buf)
                else:  # the kernel copies it (chunks without data come as runs: see _record_holes)
                    assert segments is not None
                    digest, written = chunks.copy_segments(target, segments, start, n)
                with lock:
                    state.record(idx, digest, written)
                    totals["transferred"] += fetched
                    dp.advance(n, fetched)
                    transferred = totals["transferred"]
                _throttle(opts.max_rate, transferred, t0)
        except BaseException as exc:
            failures.append(exc)
            stop.set()
        finally:
            free.put(bytearray(0))  # wake the reader if it waits for a buffer

    readers = [
        threading.Thread(target=produce, args=(pending[k::nreaders],), name=f"read-{dp.name}", daemon=True)
        for k in range(nreaders)
    ]
    writers = [threading.Thread(target=consume, name=f"write-{dp.name}", daemon=True) for _ in range(WRITERS)]
    for t in readers + writers:
        t.start()
    for w in writers:
        w.join()
    stop.set()
    for _ in readers:
        free.put(bytearray(0))
    for r in readers:
        r.join(timeout=0 if opts.cancel.is_set() else 120)
    if failures:
        raise failures[0]
    if opts.cancel.is_set():
        raise TransferInterrupted(
            f"disk {dp.name}: interrupted: the chunks copied so far are recorded: run again to resume"
        )
    return totals["transferred"]


def _record_holes(
    indices: list[int],
    target: Target,
    state: TransferState,
    dp: DiskProgress,
    lock: threading.Lock,
    chunk: int,
    size: int,
    reused: bool,
) -> None:
    """Chunks without data: cleared (a reused target) or zeroed (a device), then recorded in one commit."""
    rows = []
    covered = 0
    for idx in indices:
        start = idx * chunk
        n = min(chunk, size - start)
        if reused:
            target.clear(start, n)
        target.zero(start, n)
        rows.append((idx, chunks.zero_digest(n), 0))
        covered += n
    with lock:
        state.record_many(rows)
        dp.advance(covered, 0)


def _remote(disk: VirtualDisk) -> bool:
    """Whether any layer of the disk is read over HTTP."""
    layer: VirtualDisk | None = disk
    while layer is not None:
        if any(isinstance(r, HttpFile) for r in layer.readers):
            return True
        layer = layer.parent
    return False


def _throttle(max_rate: float | None, transferred: int, t0: float) -> None:
    """Hold the writer back so that a disk's source reads stay under ``max_rate`` bytes per second."""
    if max_rate:
        ahead = transferred / max_rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)


def _qemu_compare(job: DiskJob, disk: VirtualDisk, target: Target) -> None:
    import subprocess  # only qemu-img needs it (4 ms of start-up)

    assert isinstance(job.source, LocalSource)
    args = ["qemu-img", "compare", "-U", "-F", "raw"]
    if disk.kind == "raw":
        args += ["-f", "raw"]
    result = subprocess.run([*args, str(job.source.path), str(target.data_path)], capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["differ"]
        raise DiskError(f"verification failed: qemu-img compare: {lines[-1].removeprefix('qemu-img: ')}")
