"""A real HTTP CONNECT proxy on loopback, as a corporate HTTPS proxy: it tunnels bytes and records targets."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def connect_proxy() -> Iterator[tuple[int, list[str]]]:
    """Run the proxy; yields (its port, the host:port targets it tunnelled to)."""
    listener = socket.create_server(("127.0.0.1", 0))
    tunnels: list[str] = []
    stop = threading.Event()

    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while not stop.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for side in ready:
                    data = side.recv(65536)
                    if not data:
                        return
                    (b if side is a else a).sendall(data)
        except OSError:
            pass
        finally:
            a.close()
            b.close()

    def handle(client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            head += chunk
        method, target = head.split(b"\r\n", 1)[0].split()[:2]
        if method != b"CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            client.close()
            return
        host, port = target.decode().rsplit(":", 1)
        tunnels.append(target.decode())
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        pipe(client, upstream)

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(client,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], tunnels
    finally:
        stop.set()
        thread.join()
        listener.close()
