"""The engine's HTTP/1.1 client (converters/disks/http11.py) against the simulator's datastore,
directly and through a real CONNECT proxy: ranged GETs on one kept-alive connection, exact
bytes, the caller's TLS context enforced."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from converters.disks.http11 import Connection
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
