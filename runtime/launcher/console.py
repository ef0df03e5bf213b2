"""The serial console, served read-only on a unix socket.

virtlogd writes everything the guest prints to ``console.log`` from the first byte, so
nothing is lost before a client attaches. Each client of ``console.sock`` gets the whole
log so far, then the stream as it grows, and EOF once the guest has stopped.
virtlogd rotates the log at 2 MiB (``console.log`` → ``console.log.0``); the tail follows.
"""

from __future__ import annotations

import os
import socket
import socketserver
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from runtime.launcher.api import PrivateUnixServer

POLL_SECONDS = 0.05


def follow(path: Path, stopped: Callable[[], bool]) -> Iterator[bytes]:
    """Yield the bytes of ``path`` as they are written, until ``stopped()`` and nothing more comes."""
    handle = None
    inode = None
    try:
        while True:
            if handle is None:
                try:
                    handle = path.open("rb")
                    inode = os.fstat(handle.fileno()).st_ino
                except FileNotFoundError:
                    if stopped():
                        return
                    time.sleep(POLL_SECONDS)
                    continue
            chunk = handle.read(65536)
            if chunk:
                yield chunk
                continue
            try:
                rotated = os.stat(path).st_ino != inode
            except FileNotFoundError:
                rotated = False
            if rotated:  # drained the old file: continue with the new one
                handle.close()
                handle = None
                continue
            if stopped():
                chunk = handle.read()
                if chunk:
                    yield chunk
                return
            time.sleep(POLL_SECONDS)
    finally:
        if handle is not None:
            handle.close()


class ConsoleServer(PrivateUnixServer):
    # server_close() waits for every client to get the console's last bytes before the launcher exits
    daemon_threads = False
    block_on_close = True

    def __init__(self, socket_path: Path, log_path: Path, stopped: Callable[[], bool]) -> None:
        self.log_path = log_path
        self.stopped = stopped
        super().__init__(socket_path, _ConsoleHandler, "console")


class _ConsoleHandler(socketserver.BaseRequestHandler):
    server: ConsoleServer

    def handle(self) -> None:
        connection: socket.socket = self.request
        try:
            for chunk in follow(self.server.log_path, self.server.stopped):
                connection.sendall(chunk)
        except OSError:  # the client went away
            return
