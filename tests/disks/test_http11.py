"""The engine's HTTP/1.1 client (converters/disks/http11.py) against the simulator's datastore,
directly and through a real CONNECT proxy: ranged GETs on one kept-alive connection, exact
bytes, the caller's TLS context enforced."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from converters.disks import DiskJob, transfer_disks
from converters.disks.http11 import Connection, ProtocolError
from core.errors import DiskError
from tests.connect_proxy import connect_proxy
from tests.disks.conftest import MiB
from tests.disks.test_http import Datastore, _insecure


@pytest.fixture(scope="module")
def datastore(vcsim) -> Datastore:  # type: ignore[no-untyped-def]
    return Datastore(vcsim)


@pytest.fixture
def remote_file(datastore: Datastore, src_dir: Path) -> tuple[str, bytes]:
    data = os.urandom(3 * MiB + 12345)
    local = src_dir / "blob.bin"
    local.write_bytes(data)
    datastore.put(local, "http11/blob.bin")
    return datastore.url("http11/blob.bin"), data


def _get_range(conn: Connection, url: str, cookie: str, first: int, last: int) -> bytes:
    parts = urlsplit(url)
    resp = conn.get(f"{parts.path}?{parts.query}", {"Cookie": cookie, "Range": f"bytes={first}-{last}"})
    assert resp.status == 206, (resp.status, resp.reason)
    assert resp.headers["content-range"].startswith(f"bytes {first}-{last}/")
    out = bytearray(last - first + 1)
    assert conn.read_into(memoryview(out)) == len(out)
    assert conn.reusable(resp)
    return bytes(out)


def _connection(url: str, context: ssl.SSLContext, proxy: tuple[str, int] | None = None) -> Connection:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    return Connection(parts.hostname, parts.port, context=context, timeout=30, proxy=proxy)


def test_ranged_gets_on_one_connection(datastore: Datastore, remote_file: tuple[str, bytes]) -> None:
    url, data = remote_file
    conn = _connection(url, _insecure())
    try:
        spans = [(0, MiB - 1), (MiB, 3 * MiB - 1), (3 * MiB, len(data) - 1), (17, 17)]
        for first, last in spans:
            assert _get_range(conn, url, datastore.cookie, first, last) == data[first : last + 1]
        sock = conn.sock
        assert _get_range(conn, url, datastore.cookie, 5, 4096) == data[5:4097]
        assert conn.sock is sock  # kept alive: the same TCP connection served every request
    finally:
        conn.close()


def test_error_status_and_verified_tls(datastore: Datastore, remote_file: tuple[str, bytes]) -> None:
    url, _data = remote_file
    conn = _connection(url, _insecure())
    try:
        parts = urlsplit(datastore.url("http11/missing.bin"))
        resp = conn.get(f"{parts.path}?{parts.query}", {"Cookie": datastore.cookie})
        assert resp.status == 404
    finally:
        conn.close()
    # The default context verifies: the simulator's self-signed certificate is refused in the handshake.
    strict = _connection(url, ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        strict.get("/", {})
    strict.close()


def test_through_a_connect_proxy(datastore: Datastore, remote_file: tuple[str, bytes]) -> None:
    url, data = remote_file
    with connect_proxy() as (port, targets):
        conn = _connection(url, _insecure(), proxy=("127.0.0.1", port))
        try:
            assert _get_range(conn, url, datastore.cookie, 0, 2 * MiB) == data[: 2 * MiB + 1]
            assert _get_range(conn, url, datastore.cookie, 2 * MiB + 1, len(data) - 1) == data[2 * MiB + 1 :]
        finally:
            conn.close()
        assert targets == [urlsplit(url).netloc]  # one tunnel, to the datastore, for both requests
        # TLS runs inside the tunnel to the datastore itself: a verifying context still refuses it.
        strict = _connection(url, ssl.create_default_context(), proxy=("127.0.0.1", port))
        with pytest.raises(ssl.SSLCertVerificationError):
            strict.get("/", {})
        strict.close()


@contextmanager
def _one_shot_server(answer: bytes) -> Iterator[tuple[int, list[bytes]]]:
    """A loopback server that reads one request head, sends ``answer`` and closes; yields (port, heads)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    heads: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            client.settimeout(10)
            with client:
                head = b""
                while b"\r\n\r\n" not in head:
                    data = client.recv(4096)
                    if not data:
                        break
                    head += data
                heads.append(head)
                client.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], heads
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_connection_close_and_chunked_bodies() -> None:
    body = b"x" * 1000
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n" + body
    with _one_shot_server(answer) as (port, heads):
        conn = Connection("127.0.0.1", port, context=None, timeout=10)
        resp = conn.get("/disk", {"Range": "bytes=0-999"})
        out = bytearray(1000)
        assert (resp.status, conn.read_into(memoryview(out)), bytes(out)) == (200, 1000, body)
        assert not conn.reusable(resp)  # the server said it closes: never reused
        conn.close()
        assert heads[0].startswith(b"GET /disk HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"\r\nRange: bytes=0-999\r\n" in heads[0]
    chunked = b"HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" + body + b"\r\n0\r\n\r\n"
    with _one_shot_server(chunked) as (port, _heads):
        conn = Connection("127.0.0.1", port, context=None, timeout=10)
        with pytest.raises(ProtocolError, match="Transfer-Encoding"):
            conn.get("/disk", {})
        conn.close()
    with _one_shot_server(b"SSH-2.0-OpenSSH_9.2\r\n\r\n") as (port, _heads):
        conn = Connection("127.0.0.1", port, context=None, timeout=10)
        with pytest.raises(ProtocolError, match="bad status line"):
            conn.get("/disk", {})
        conn.close()


def test_proxy_refusing_the_tunnel_is_one_line(
    out_dir: Path, datastore: Datastore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy answering 407 fails the disk with one line (after the retries), and the credentials of
    the proxy URL went to the proxy only, as Proxy-Authorization of the CONNECT."""
    refusal = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
    with _one_shot_server(refusal) as (port, heads):
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("https_proxy", f"http://alice:s%40cret@127.0.0.1:{port}")
        source = datastore.source("px/none.vmdk")
        with pytest.raises(DiskError) as failure:
            transfer_disks([DiskJob("px", source, out_dir / "px.img")], progress="none")
    message = failure.value.message
    assert "Tunnel connection failed: 407 Proxy Authentication Required" in message and "\n" not in message
    assert "s@cret" not in message and "alice" not in message
    netloc = urlsplit(datastore.base).netloc
    assert heads[0].startswith(f"CONNECT {netloc} HTTP/1.1\r\n".encode())
    token = base64.b64encode(b"alice:s@cret").decode()
    assert f"\r\nProxy-Authorization: Basic {token}\r\n".encode() in heads[0]
    assert b"Cookie" not in heads[0]  # the session cookie travels inside the TLS tunnel only
    assert list(out_dir.iterdir()) == []
