"""The launcher's local API: HTTP+JSON on the unix socket ``launcher.sock``.

``GET /status`` → the launcher's view of the instance; ``POST /shutdown`` (ACPI), ``POST /destroy`` (power off now),
``POST /pause``, ``POST /unpause``. Errors are ``{"error": "..."}`` with a 4xx/5xx status.
Also the client used by local mode and the node handler.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import TargetError
from runtime.launcher.contract import API_SOCKET, CONSOLE_SOCKET

# The socket names, for the API's clients (the cutover's local target); defined in the launcher's contract.
API_SOCKET_NAME = API_SOCKET
CONSOLE_SOCKET_NAME = CONSOLE_SOCKET


class PrivateUnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A threaded server on a unix socket only its owner may use, replacing a stale socket file."""

    def __init__(self, socket_path: Path, handler: type[socketserver.BaseRequestHandler], name: str) -> None:
        if socket_path.exists():
            socket_path.unlink()
        super().__init__(str(socket_path), handler)
        os.chmod(socket_path, 0o600)
        self.thread = threading.Thread(target=self.serve_forever, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()


class ApiServer(PrivateUnixServer):
    daemon_threads = True

    def __init__(
        self,
        socket_path: Path,
        status: Callable[[], dict[str, Any]],
        actions: dict[str, Callable[[], None]],
    ) -> None:
        self.status = status
        self.actions = actions
        super().__init__(socket_path, _Handler, "api")


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"

    def address_string(self) -> str:  # a unix socket has no client address
        return "local"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/status":
            self._reply(200, self.server.status())
        else:
            self._reply(404, {"error": f"no such resource {self.path}"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        action = self.server.actions.get(self.path.lstrip("/"))
        if action is None:
            self._reply(404, {"error": f"no such action {self.path}"})
            return
        try:
            action()
        except Exception as error:  # a libvirt refusal (e.g. pause a stopped guest) is the client's answer
            self._reply(409, {"error": str(error)})
            return
        self._reply(202, self.server.status())


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.socket_path))


def request(socket_path: Path, method: str, path: str, timeout: float = 10.0) -> dict[str, Any]:
    """Call the launcher API; raises TargetError when the launcher does not answer or refuses."""
    connection = _UnixConnection(socket_path, timeout)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        body = json.loads(response.read() or b"{}")
    except (OSError, http.client.HTTPException, json.JSONDecodeError) as error:
        raise TargetError(f"launcher at {socket_path} does not answer: {error}") from None
    finally:
        connection.close()
    if response.status >= 400:
        raise TargetError(f"launcher refused {method} {path}: {body.get('error', response.status)}")
    return body
