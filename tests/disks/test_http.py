"""Disks over HTTP(S): the simulator's datastore (/folder, with Range) and a faulty server of our own."""

from __future__ import annotations

import http.server
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyVim.connect import Disconnect, SmartConnect

from converters.disks import DiskJob, HttpSource, discard_transfer, transfer_disks
from core.errors import DiskError
from tests.connect_proxy import connect_proxy
from tests.disks.conftest import (
    MiB,
    allocated,
    assert_one_line_error,
    folder_digest,
    make_vmdk,
    qemu_img,
    qemu_io,
    run_cli,
    same_image,
)


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Datastore:
    def __init__(self, sim) -> None:  # type: ignore[no-untyped-def]
        si = SmartConnect(
            host=sim.host, port=sim.port, user=sim.username, pwd=sim.password, disableSslCertValidation=True
        )
        self.cookie = si._stub.cookie
        Disconnect(si)
        self.base = sim.url.rsplit("/sdk", 1)[0]

    def url(self, path: str) -> str:
        return f"{self.base}/folder/{path}?dcPath=DC0&dsName=LocalDS_0"

    def put(self, local: Path, remote: str) -> None:
        with open(local, "rb") as f:
            req = urllib.request.Request(
                self.url(remote),
                data=f,
                method="PUT",
                headers={"Cookie": self.cookie, "Content-Length": str(local.stat().st_size)},
            )
            with urllib.request.urlopen(req, context=_insecure()) as resp:
                assert resp.status in (200, 201)

    def source(self, remote: str) -> HttpSource:
        return HttpSource(self.url(remote), {"Cookie": self.cookie}, _insecure())


@pytest.fixture(scope="module")
def datastore(vcsim) -> Datastore:  # type: ignore[no-untyped-def]
    return Datastore(vcsim)


@pytest.mark.parametrize(
    "subformat", ["monolithicSparse", "monolithicFlat", "streamOptimized", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"]
)
def test_datastore_kinds(subformat: str, datastore: Datastore, src_dir: Path, out_dir: Path) -> None:
    src = make_vmdk(src_dir, f"h-{subformat}", subformat)
    for f in src_dir.iterdir():
        datastore.put(f, f"{subformat}/{f.name}")
    target = out_dir / "h.img"
    [result] = transfer_disks([DiskJob("h", datastore.source(f"{subformat}/{src.name}"), target)], progress="none")
    assert same_image(src, target)
    assert allocated(target) <= 5 * MiB  # zero blocks never written
    if "Flat" not in subformat:  # sparse kinds: only grains are fetched
        assert result.bytes_transferred <= 5 * MiB
    else:  # flat over HTTP: no allocation map, the extent is streamed
        assert result.bytes_transferred == 64 * MiB


def test_datastore_snapshot_chain_and_vmfs(datastore: Datastore, src_dir: Path, out_dir: Path) -> None:
    base = make_vmdk(src_dir, "vm", "monolithicSparse")
    delta = src_dir / "vm-000001.vmdk"
    qemu_img("create", "-f", "vmdk", "-b", base.name, "-F", "vmdk", str(delta))
    qemu_io(delta, "write -P 0xee 8M 1M")
    flat = make_vmdk(src_dir, "esx", "monolithicFlat")
    flat.write_text(flat.read_text().replace("monolithicFlat", "vmfs").replace(" FLAT ", " VMFS "))
    for f in src_dir.iterdir():
        datastore.put(f, f"chain/{f.name}")
    jobs = [
        DiskJob("chain", datastore.source(f"chain/{delta.name}"), out_dir / "chain.img"),
        DiskJob("esx", datastore.source("chain/esx.vmdk"), out_dir / "esx.img"),
    ]
    transfer_disks(jobs, progress="none", concurrency=2)
    assert same_image(delta, out_dir / "chain.img")
    assert same_image(src_dir / "esx-flat.vmdk", out_dir / "esx.img")


def test_datastore_404_and_escaping_extent(datastore: Datastore, src_dir: Path, out_dir: Path) -> None:
    result = run_cli(datastore.url("nope/missing.vmdk"), str(out_dir / "x.img"), "--insecure")
    assert_one_line_error(result, "HTTP 404")
    src = make_vmdk(src_dir, "esc", "monolithicFlat")
    src.write_text(src.read_text().replace('"esc-flat.vmdk"', '"../esc-flat.vmdk"'))
    datastore.put(src, "esc/esc.vmdk")
    datastore.put(src_dir / "esc-flat.vmdk", "esc-flat.vmdk")
    assert_one_line_error(run_cli(datastore.url("esc/esc.vmdk"), str(out_dir / "x.img"), "--insecure"), "refused")
    assert list(out_dir.iterdir()) == []


def test_tls_verified_by_default(datastore: Datastore, out_dir: Path) -> None:
    result = run_cli(datastore.url("nope/missing.vmdk"), str(out_dir / "x.img"))
    assert_one_line_error(result, "certificate")


class Faulty:
    """A small HTTP server of our own serving one file with Range, failing on purpose."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fail_500 = 0  # answer 500 to this many requests
        self.drop_after: int | None = None  # cut the connection after this many body bytes...
        self.drops = 0  # ...this many times
        self.requests = 0
        faulty = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                faulty.requests += 1
                if faulty.fail_500 > 0:
                    faulty.fail_500 -= 1
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = faulty.path.read_bytes()
                first, last = 0, len(data) - 1
                rng = self.headers.get("Range")
                if rng:
                    a, b = rng.removeprefix("bytes=").split("-")
                    first, last = int(a), min(int(b), len(data) - 1)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[first : last + 1]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if faulty.drop_after is not None and faulty.drops > 0 and len(body) > faulty.drop_after:
                    faulty.drops -= 1
                    self.wfile.write(body[: faulty.drop_after])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/disk-flat.vmdk"


@pytest.fixture
def faulty(src_dir: Path) -> Iterator[Faulty]:
    src = make_vmdk(src_dir, "disk", "monolithicFlat")
    server = Faulty(src_dir / "disk-flat.vmdk")
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        assert src.exists()


def test_dropped_connection_is_retried(faulty: Faulty, src_dir: Path, out_dir: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("converters.disks.sources.HTTP_BACKOFF", 0.05)
    faulty.drop_after, faulty.drops = 3 * MiB, 2  # two drops mid-stream, then fine
    faulty.fail_500 = 1
    target = out_dir / "d.img"
    transfer_disks([DiskJob("d", HttpSource(faulty.url, {}, None), target)], progress="none", chunk_size=4 * MiB)
    assert same_image(src_dir / "disk-flat.vmdk", target)
    assert faulty.drops == 0 and faulty.fail_500 == 0


def test_persistent_faults_give_up_with_one_line(faulty: Faulty, src_dir: Path, out_dir: Path) -> None:
    before = folder_digest(src_dir)
    faulty.fail_500 = 1000
    assert_one_line_error(run_cli(faulty.url, str(out_dir / "a.img")), "HTTP 500", "gave up after 5 attempts")
    assert list(out_dir.iterdir()) == []  # nothing started: nothing left
    faulty.fail_500 = 0
    faulty.drop_after, faulty.drops = MiB, 1000
    result = run_cli(faulty.url, str(out_dir / "b.img"), "--chunk-size", str(4 * MiB))
    assert_one_line_error(result, "connection dropped", "gave up")
    assert folder_digest(src_dir) == before
    # Whatever was verified is kept; a later run with a healthy server finishes it.
    faulty.drops = 0
    again = run_cli(faulty.url, str(out_dir / "b.img"), "--chunk-size", str(4 * MiB))
    assert again.returncode == 0, again.stderr
    assert same_image(src_dir / "disk-flat.vmdk", out_dir / "b.img")


def test_bad_url() -> None:
    with pytest.raises(DiskError, match="not an http"):
        transfer_disks([DiskJob("x", HttpSource("ftp://x/y", {}, None), Path("/tmp/x.img"))], progress="none")


def test_https_proxy_from_the_environment(
    datastore: Datastore, src_dir: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY is honoured (a CONNECT tunnel; TLS still runs to the datastore), NO_PROXY bypasses it."""
    src = make_vmdk(src_dir, "px", "monolithicSparse")
    datastore.put(src, "px/px.vmdk")
    with connect_proxy() as (port, targets):
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
        result = run_cli(datastore.url("px/px.vmdk"), str(out_dir / "px.img"), "--insecure")
        assert result.returncode == 0, result.stderr
        assert set(targets) == {datastore.base.split("://", 1)[1]}  # CONNECT host:port of the datastore
        assert same_image(src, out_dir / "px.img")
        # TLS runs through the tunnel to the datastore itself: its self-signed certificate is still refused.
        assert_one_line_error(run_cli(datastore.url("px/px.vmdk"), str(out_dir / "other.img")), "certificate")
        targets.clear()
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        (out_dir / "px.img").unlink()
        discard_transfer(out_dir / "px.img")
        transfer_disks([DiskJob("px", datastore.source("px/px.vmdk"), out_dir / "px.img")], progress="none")
        assert targets == [] and same_image(src, out_dir / "px.img")
