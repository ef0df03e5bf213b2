"""The durable record of one transfer, beside its target: which chunks are written, and their digests.

SQLite in WAL mode: every chunk is committed after its bytes are written, with the XXH3
digest of the source bytes, so a process killed at any moment (kill -9 included) leaves a
record that names only chunks handed to the target. On resume the recorded chunks are
checked against their digests (target-only reads) before being trusted; ``--verify`` checks
them all again from storage.

The engine owns this record. Others use ``transfer_status`` and ``discard_transfer``, never
its files.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from converters.disks.writer import Target
from core import private
from core.errors import DiskError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (idx INTEGER PRIMARY KEY, checksum TEXT NOT NULL, written INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class TransferIdentity:
    """What a transfer record is about (source, size, chunking, format); a record about another is discarded."""

    source: str
    virtual_size: int
    chunk_size: int
    target_format: str


class TransferState:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            if not path.exists():  # 0600 like the image it describes; SQLite gives -wal/-shm the same mode
                os.close(private.open_fd(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC))
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise DiskError(f"{path}: cannot open the transfer record: {exc}") from None

    def _meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def plan(self) -> TransferIdentity | None:
        meta = self._meta()
        try:
            return TransferIdentity(
                meta["source"], int(meta["virtual_size"]), int(meta["chunk_size"]), meta["target_format"]
            )
        except (KeyError, ValueError):
            return None

    def completed_target(self) -> tuple[int, int] | None:
        """(size, mtime_ns) of the target when the transfer finished, if it did."""
        meta = self._meta()
        if "complete_size" in meta and "complete_mtime" in meta:
            return int(meta["complete_size"]), int(meta["complete_mtime"])
        return None

    def stat(self, key: str, default: int = 0) -> int:
        value = self._meta().get(key)
        return int(value) if value is not None else default

    def reset(self, plan: TransferIdentity) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM meta")
            self.db.execute("DELETE FROM chunks")
            self.db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("source", plan.source),
                    ("virtual_size", str(plan.virtual_size)),
                    ("chunk_size", str(plan.chunk_size)),
                    ("target_format", plan.target_format),
                ],
            )

    def done(self) -> dict[int, tuple[str, int]]:
        return {idx: (digest, n) for idx, digest, n in self.db.execute("SELECT idx, checksum, written FROM chunks")}

    def record(self, idx: int, checksum: str, written: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO chunks VALUES (?, ?, ?)", (idx, checksum, written))

    def record_many(self, rows: list[tuple[int, str, int]]) -> None:
        """Several chunks (idx, checksum, written) in one commit."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO chunks VALUES (?, ?, ?)", rows)

    def forget(self, indices: list[int]) -> None:
        self.db.executemany("DELETE FROM chunks WHERE idx = ?", [(i,) for i in indices])

    def complete(self, size: int, mtime_ns: int, transferred: int) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [("complete_size", str(size)), ("complete_mtime", str(mtime_ns)), ("transferred", str(transferred))],
            )

    def reopen(self) -> None:
        """A completed transfer is being resumed (its target changed): no longer complete."""
        self.db.execute("DELETE FROM meta WHERE key IN ('complete_size', 'complete_mtime', 'transferred')")

    def close(self) -> None:
        self.db.close()

    def remove(self) -> None:
        self.close()
        _remove_record(self.path)


def _remove_record(path: Path) -> bool:
    found = False
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            found = True
            part.unlink(missing_ok=True)
    return found


@dataclass(frozen=True)
class TransferStatus:
    """What the engine knows of one target's transfer (see ``transfer_status``)."""

    target: Path  # the image (a directory target resolved to its disk.img)
    source: str  # the source's identity, as recorded
    virtual_size: int
    target_format: str
    chunks_done: int
    chunks_total: int
    bytes_transferred: int  # read from the source when the transfer completed, else 0
    complete: bool  # finished, and the image has not changed since


def transfer_status(target: Path, target_format: str = "raw") -> TransferStatus | None:
    """The recorded state of the transfer into ``target``, or None when there is none."""
    try:
        tgt = Target(target, target_format)
    except DiskError:
        return None
    if not tgt.state_path.exists():
        return None
    state = TransferState(tgt.state_path)
    try:
        plan = state.plan()
        if plan is None:
            return None
        finished = state.completed_target()
        total = (plan.virtual_size + plan.chunk_size - 1) // plan.chunk_size
        complete = finished is not None and tgt.identity() == finished
        done = total if finished is not None else len(state.done())
        return TransferStatus(
            tgt.path,
            plan.source,
            plan.virtual_size,
            plan.target_format,
            done,
            total,
            state.stat("transferred"),
            complete,
        )
    finally:
        state.close()


def discard_transfer(target: Path, target_format: str = "raw") -> bool:
    """Forget the transfer into ``target`` (the image stays): the next transfer is a full copy.

    True when there was a record to discard."""
    try:
        tgt = Target(target, target_format)
    except DiskError:
        return False
    return _remove_record(tgt.state_path)
