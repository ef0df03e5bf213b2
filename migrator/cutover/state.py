"""The migration state store: one SQLite file recording each VM's cutover, step by step.

Every step is recorded durably *before* it starts and *after* it ends (each write is its
own committed transaction), so a process killed at any moment (kill -9 included) leaves a
record that says exactly which step was under way. Facts a later step or a rollback
needs (the source's power state before cutover, when the source went off, ...) are kept
as key/value facts of the migration. No credentials are ever stored here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import private
from core.errors import InputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS migrations (
    vm TEXT PRIMARY KEY,
    plan TEXT,
    source TEXT,
    target TEXT,
    status TEXT NOT NULL,            -- running | completed | failed | interrupted | rolled_back
    current_step TEXT,
    started_at REAL NOT NULL,
    finished_at REAL,
    error TEXT,
    facts TEXT NOT NULL DEFAULT '{}' -- JSON object
);
CREATE TABLE IF NOT EXISTS steps (
    vm TEXT NOT NULL,
    step TEXT NOT NULL,
    status TEXT NOT NULL,            -- started | done | failed
    started_at REAL NOT NULL,
    finished_at REAL,
    bytes INTEGER NOT NULL DEFAULT 0,
    detail TEXT,
    PRIMARY KEY (vm, step)
);
"""


_HELD: dict[Path, int] = {}  # lock files this process holds, and how many callers hold each


@contextmanager
def only_one_run(state_dir: Path, key: str) -> Iterator[None]:
    """One writer per VM: a cutover, rollback or convert of ``key`` at a time, machine-wide.

    Two would race on the source's power or write the same images. ``flock`` on
    ``STATE_DIR/<key>.lock``: the kernel drops it when the process dies, kill -9 included. A
    process already holding it (a cutover running its own convert) may take it again.
    """
    lock_path = (state_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.lock").absolute()
    if _HELD.get(lock_path):
        _HELD[lock_path] += 1
        try:
            yield
        finally:
            _HELD[lock_path] -= 1
        return
    try:
        private.private_dir(state_dir)
        fd = private.open_fd(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    except OSError as error:
        raise InputError(f"cannot use state directory {state_dir}: {error.strerror or error}") from None
    with os.fdopen(fd, "r+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another convert or cutover of {key} is running (lock {lock_path})") from None
        _HELD[lock_path] = 1
        try:
            yield
        finally:
            del _HELD[lock_path]


def run_alive(state_dir: Path, key: str) -> bool:
    """Whether a process holds ``key``'s lock now (a convert, cutover or rollback of it is running)."""
    lock_path = (state_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.lock").absolute()
    if _HELD.get(lock_path):
        return True
    try:
        lock = lock_path.open("r")
    except OSError:
        return False
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
    return False


def default_state_dir() -> Path:
    if os.environ.get("MIGRATOR_STATE_DIR"):
        return Path(os.environ["MIGRATOR_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "migrator"


@dataclass
class StepRecord:
    step: str
    status: str
    started_at: float
    finished_at: float | None
    bytes: int = 0
    detail: str | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at


@dataclass
class Migration:
    vm: str
    plan: str | None
    source: str | None
    target: str | None
    status: str
    current_step: str | None
    started_at: float
    finished_at: float | None
    error: str | None
    facts: dict[str, Any] = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)

    def step(self, name: str) -> StepRecord | None:
        return next((s for s in self.steps if s.step == name), None)

    def done(self, name: str) -> bool:
        record = self.step(name)
        return record is not None and record.status == "done"

    def _since_source_off(self, fact: str) -> float | None:
        off, until = self.facts.get("source_off_at"), self.facts.get(fact)
        if off is None or until is None:
            return None
        return float(until) - float(off)

    @property
    def downtime_to_running_seconds(self) -> float | None:
        """Source powered off → the target's instance Running (not yet checked)."""
        return self._since_source_off("target_running_at")

    @property
    def downtime_to_verified_seconds(self) -> float | None:
        """Source powered off → the target passed its checks (console marker, port): what users see."""
        return self._since_source_off("target_verified_at")

    @property
    def downtime_to_source_back_seconds(self) -> float | None:
        """Source powered off → the source powered back on by a rollback."""
        return self._since_source_off("source_back_on_at")

    @property
    def downtime_seconds(self) -> float | None:
        """The service's downtime: until the target was verified, or until a rollback brought the source back."""
        if self.facts.get("source_back_on_at") is not None:
            return self.downtime_to_source_back_seconds
        return self.downtime_to_verified_seconds

    @property
    def source_off_since(self) -> float | None:
        """When the cutover powered the source off, while it is still off and the target not verified."""
        off = self.facts.get("source_off_at")
        if off is None or self.status == "completed" or self.downtime_seconds is not None:
            return None
        return float(off)

    @property
    def where(self) -> str | None:
        """One line saying where an unfinished cutover stands and what the user can do, else None."""
        step = (self.facts.get("interrupted") or {}).get("step") or self.current_step or "preflight"
        how = {"interrupted": "interrupted", "failed": "failed"}.get(self.status)
        if self.facts.get("target_not_confirmed_stopped"):
            return (
                "source is off, the target could not be confirmed stopped: stop it, then "
                f"`migrator cutover --rollback --vm {self.vm}`"
            )
        if how is None:
            return None
        if self.source_off_since is not None:
            return f"source is off, {how} in step {step}: re-run to resume, or roll back"
        return f"{how} in step {step}, the source is as it was: re-run to resume"

    @property
    def bytes_moved(self) -> int:
        return sum(s.bytes for s in self.steps)


class StateStore:
    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = state_dir or default_state_dir()
        self.path = self.state_dir / "migrations.db"
        try:
            private.private_dir(self.state_dir)
            # SQLite gives its -wal and -shm files the database file's mode: create it 0600 first. Only when it
            # is missing: closing any descriptor of the file drops every POSIX lock this process holds on it,
            # those of the other stores' connections too (`migrate` opens one per worker), and another process
            # closing its own connection then takes itself for the last one and deletes the WAL under them.
            if not self.path.exists():
                with contextlib.suppress(FileExistsError):
                    os.close(private.open_fd(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC))
        except OSError as error:
            raise InputError(f"cannot use state directory {self.state_dir}: {error.strerror or error}") from None
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # migrations -----------------------------------------------------------------------
    def begin(self, vm: str, *, plan: str | None, source: str | None, target: str | None) -> Migration:
        """Start a migration record, or return the existing one so the run resumes it."""
        existing = self.get(vm)
        if existing is not None:
            if existing.status in ("failed", "interrupted"):
                with self._tx() as db:
                    db.execute("UPDATE migrations SET status='running', error=NULL WHERE vm=?", (vm,))
            return self.get(vm) or existing
        with self._tx() as db:
            db.execute(
                "INSERT INTO migrations (vm, plan, source, target, status, started_at) VALUES (?,?,?,?,?,?)",
                (vm, plan, source, target, "running", time.time()),
            )
        migration = self.get(vm)
        assert migration is not None
        return migration

    def get(self, vm: str) -> Migration | None:
        row = self._db.execute(
            "SELECT vm, plan, source, target, status, current_step, started_at, finished_at, error, facts "
            "FROM migrations WHERE vm=?",
            (vm,),
        ).fetchone()
        if row is None:
            return None
        return self._migration(row)

    def all(self) -> list[Migration]:
        rows = self._db.execute(
            "SELECT vm, plan, source, target, status, current_step, started_at, finished_at, error, facts "
            "FROM migrations ORDER BY started_at"
        ).fetchall()
        return [self._migration(row) for row in rows]

    def _migration(self, row: tuple[Any, ...]) -> Migration:
        steps = [
            StepRecord(*s)
            for s in self._db.execute(
                "SELECT step, status, started_at, finished_at, bytes, detail FROM steps WHERE vm=? ORDER BY started_at",
                (row[0],),
            ).fetchall()
        ]
        return Migration(*row[:9], facts=json.loads(row[9] or "{}"), steps=steps)

    def set_status(self, vm: str, status: str, *, error: str | None = None) -> None:
        finished = time.time() if status in ("completed", "rolled_back") else None
        with self._tx() as db:
            db.execute(
                "UPDATE migrations SET status=?, error=?, finished_at=COALESCE(?, finished_at) WHERE vm=?",
                (status, error, finished, vm),
            )

    def set_fact(self, vm: str, key: str, value: Any) -> None:
        with self._tx() as db:
            row = db.execute("SELECT facts FROM migrations WHERE vm=?", (vm,)).fetchone()
            facts = json.loads(row[0] or "{}") if row else {}
            facts[key] = value
            db.execute("UPDATE migrations SET facts=? WHERE vm=?", (json.dumps(facts, sort_keys=True), vm))

    def fact(self, vm: str, key: str, default: Any = None) -> Any:
        migration = self.get(vm)
        return default if migration is None else migration.facts.get(key, default)

    def forget(self, vm: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM steps WHERE vm=?", (vm,))
            db.execute("DELETE FROM migrations WHERE vm=?", (vm,))

    # steps ------------------------------------------------------------------------------
    def step_started(self, vm: str, step: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO steps (vm, step, status, started_at) VALUES (?,?,?,?) "
                "ON CONFLICT(vm, step) DO UPDATE SET status='started', finished_at=NULL, detail=NULL",
                (vm, step, "started", time.time()),
            )
            db.execute("UPDATE migrations SET current_step=? WHERE vm=?", (step, vm))

    def step_done(self, vm: str, step: str, *, bytes_moved: int = 0, detail: str | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE steps SET status='done', finished_at=?, bytes=?, detail=? WHERE vm=? AND step=?",
                (time.time(), bytes_moved, detail, vm, step),
            )

    def step_failed(self, vm: str, step: str, error: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE steps SET status='failed', finished_at=?, detail=? WHERE vm=? AND step=?",
                (time.time(), error, vm, step),
            )
            db.execute("UPDATE migrations SET status='failed', error=? WHERE vm=?", (error, vm))
