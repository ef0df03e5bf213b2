"""Logging for the CLI: -v is info, -vv debug, on stderr; one log file per migration; secrets never written.

Modules log through ``logging.getLogger(__name__)``. A filter on every handler this module
adds replaces any secret it was told about (``redact``: the vSphere password once read) with
``***``, so even a library that logs a request body or an exception with the password in it
writes nothing that can be replayed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FORMAT = "%(levelname)s %(name)s: %(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What a command already prints on stdout (cutover's step lines) goes to log files through this logger,
# and not to stderr a second time.
ANNOUNCE_LOGGER = "migrator.announce"
# Libraries whose warnings are our errors: urllib3 warns once per retry of an unreachable host.
QUIET_UNLESS_DEBUG = ("urllib3", "kubernetes")

_secrets: set[str] = set()
_lock = threading.Lock()


def redact(secret: str) -> str:
    """Never let ``secret`` reach a log line; returns it, so a reader can say ``return redact(password)``."""
    if secret:
        with _lock:
            _secrets.add(secret)
    return secret


def scrub(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def announce(line: str) -> None:
    """Record a line the command printed, in the migration's log file (not on stderr)."""
    logging.getLogger(ANNOUNCE_LOGGER).info("%s", line)


class _NotAnnouncements(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != ANNOUNCE_LOGGER


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            record.msg = scrub(record.getMessage())
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


def setup(verbosity: int) -> None:
    """stderr logging: warnings by default, info with -v, debug with -vv (other libraries' too)."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_migrator", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter())
    handler.addFilter(_NotAnnouncements())
    handler.setLevel(level)
    handler._migrator = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_UNLESS_DEBUG:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= 2 else logging.ERROR)


@contextmanager
def log_file(path: Path) -> Iterator[Path]:
    """Append this run's log, at debug level whatever -v says, to ``path`` (a migration's log file, ``0600``:
    it says where the VM went, as state does)."""
    from core import private

    private.private_dir(path.parent)
    os.close(private.open_fd(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC))
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    handler.addFilter(RedactingFilter())
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # stderr keeps the level -v asked for: its handler has its own
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(previous)
