"""Where disk bytes come from: local files, members of a tar archive (OVA), and HTTP(S) URLs
(a vSphere datastore's ``/folder``).

A *byte reader* reads ranges of one file (``read_into``). A *source* (``LocalSource``,
``TarMemberSource``, ``HttpSource``) names a disk and opens it as a ``VirtualDisk`` (see
image.py) built from readers for its descriptor, extents and parents.

HTTP honours ``HTTPS_PROXY``/``HTTP_PROXY`` and ``NO_PROXY`` as curl does: HTTPS through a
CONNECT tunnel (TLS still verified end to end, against the datastore's name), plain HTTP by
asking the proxy for the absolute URL.

The HTTP stack (http11 and ssl, urllib.request: a third of the engine's import time) is
imported when a disk is read over HTTP, so a local copy starts without it.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from core.errors import DiskError

if TYPE_CHECKING:
    import ssl

    from converters.disks.http11 import Connection

log = logging.getLogger(__name__)

HTTP_ATTEMPTS = 5
HTTP_BACKOFF = 0.5  # seconds, doubled per attempt
HTTP_TIMEOUT = 60.0
_IO_BLOCK = 8 << 20


class ByteReader(Protocol):
    name: str
    size: int

    def read_into(self, offset: int, out: memoryview) -> None:
        """Fill ``out`` with the bytes at ``offset``; raise DiskError if the file is shorter."""

    def data_ranges(self, start: int, end: int) -> list[tuple[int, int]] | None:
        """Ranges holding data within [start, end), or None when the reader cannot tell."""

    def close(self) -> None: ...


def seek_data_ranges(fd: int, start: int, end: int) -> list[tuple[int, int]]:
    """The ranges of [start, end) that hold data in a sparse file, from the filesystem (SEEK_DATA/SEEK_HOLE)."""
    ranges: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after pos
            break
        if data >= end:
            break
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
        ranges.append((data, hole))
        pos = hole
    return ranges


class LocalFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise DiskError(f"{path}: no such file") from None
        except OSError as exc:
            raise DiskError(f"{path}: cannot open: {exc.strerror}") from None
        st = os.fstat(self.fd)
        if stat.S_ISBLK(st.st_mode):
            self.size = os.lseek(self.fd, 0, os.SEEK_END)
        else:
            self.size = st.st_size
        self.is_regular = stat.S_ISREG(st.st_mode)

    def read_into(self, offset: int, out: memoryview) -> None:
        done = 0
        want = len(out)
        while done < want:
            n = os.preadv(self.fd, [out[done : done + _IO_BLOCK * 4]], offset + done)
            if n == 0:
                raise DiskError(f"{self.path}: truncated: expected data at byte {offset + done} (file has {self.size})")
            done += n

    def data_ranges(self, start: int, end: int) -> list[tuple[int, int]] | None:
        if not self.is_regular:
            return None
        return seek_data_ranges(self.fd, start, min(end, self.size))

    def head(self, n: int) -> bytes:
        return os.pread(self.fd, n, 0)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class SliceFile:
    """A byte range of a local file standing for a file of its own: a member of an uncompressed tar."""

    def __init__(self, path: Path, base: int, size: int, *, name: str) -> None:
        self.path = path
        self.base = base
        self.size = size
        self.name = name
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise DiskError(f"{path}: cannot open: {exc.strerror}") from None

    def read_into(self, offset: int, out: memoryview) -> None:
        if offset + len(out) > self.size:
            raise DiskError(f"{self.path}: member {self.name} truncated: expected data at byte {self.size}")
        done = 0
        while done < len(out):
            n = os.preadv(self.fd, [out[done : done + _IO_BLOCK * 4]], self.base + offset + done)
            if n == 0:
                raise DiskError(f"{self.path}: truncated archive: member {self.name} ends early")
            done += n

    def data_ranges(self, start: int, end: int) -> list[tuple[int, int]] | None:
        return None

    def head(self, n: int) -> bytes:
        return os.pread(self.fd, min(n, self.size), self.base)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class HttpError(DiskError):
    pass


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    authorization: str | None  # "Basic ..." from the proxy URL's user:password, never printed


def proxy_for(url: str) -> Proxy | None:
    """The proxy the environment names for ``url`` (HTTPS_PROXY / HTTP_PROXY / ALL_PROXY, NO_PROXY)."""
    import base64
    import urllib.request

    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    spec = proxies.get(parts.scheme) or proxies.get("all")
    if not spec or not parts.hostname:
        return None
    if urllib.request.proxy_bypass_environment(parts.hostname, proxies):
        return None
    if "://" not in spec:
        spec = f"http://{spec}"
    proxy = urlsplit(spec)
    if proxy.scheme != "http" or not proxy.hostname:
        raise DiskError(f"proxy {_safe(spec)}: only http:// proxies are supported")
    auth = None
    if proxy.username is not None:
        pair = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
        auth = "Basic " + base64.b64encode(pair).decode()
    return Proxy(proxy.hostname, proxy.port or 80, auth)


@dataclass
class HttpFile:
    """Ranged GETs over persistent connections (reopened on errors), retried with backoff.

    One connection per concurrent caller (the engine reads a remote disk with two, which hides
    the datastore's time to first byte: see BENCHMARKS.md), kept open between requests."""

    url: str
    headers: dict[str, str]
    ssl_context: ssl.SSLContext | None
    attempts: int = HTTP_ATTEMPTS
    backoff: float = field(default_factory=lambda: HTTP_BACKOFF)  # read when made: tests shorten it
    size: int = -1
    name: str = ""
    _idle: list[Connection] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DiskError(f"not an http(s) URL: {_safe(self.url)}")
        self.name = parts.path.rsplit("/", 1)[-1]
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._target = parts.path + (f"?{parts.query}" if parts.query else "")
        self._proxy = proxy_for(self.url)
        self._extra: dict[str, str] = {}
        if self._proxy is not None and self._scheme == "http":  # plain HTTP: the proxy gets the absolute URL
            self._target = _safe(self.url)
            if self._proxy.authorization:
                self._extra["Proxy-Authorization"] = self._proxy.authorization

    def _take(self) -> Connection:
        """An idle connection, or a new one (connected by its first request)."""
        import ssl

        from converters.disks.http11 import Connection

        with self._lock:
            if self._idle:
                return self._idle.pop()
        proxy = self._proxy
        tls = self._scheme == "https"
        context = (self.ssl_context or ssl.create_default_context()) if tls else None
        # HTTPS through a proxy: a CONNECT tunnel, TLS (and its checks) then runs to the datastore
        # itself; plain HTTP: asked of the proxy (the absolute URL, see __post_init__).
        return Connection(
            self._host,
            self._port or (443 if tls else 80),
            context=context,
            timeout=HTTP_TIMEOUT,
            proxy=(proxy.host, proxy.port) if proxy else None,
            proxy_authorization=proxy.authorization if proxy and tls else None,
        )

    def _give(self, conn: Connection) -> None:
        with self._lock:
            self._idle.append(conn)

    def _request(self, conn: Connection, offset: int, out: memoryview | None, length: int) -> tuple[int, int, bool]:
        """One ranged GET filling ``out``; returns (file size, bytes read, whether ``conn`` can be reused)."""
        headers = {**self.headers, **self._extra}
        headers["Range"] = f"bytes={offset}-{offset + length - 1}"
        log.debug("GET %s Range: %s", _safe(self.url), headers["Range"])
        resp = conn.get(self._target, headers)
        if resp.status not in (200, 206):
            err = HttpError(f"{_safe(self.url)}: HTTP {resp.status} {resp.reason}".rstrip())
            err.status = resp.status  # type: ignore[attr-defined]
            raise err
        if resp.status == 206:
            crange = resp.headers.get("content-range", "")
            try:
                span, total_text = crange.split(" ", 1)[1].split("/", 1)
                first, last = (int(x) for x in span.split("-", 1))
                total = int(total_text)
            except (IndexError, ValueError):
                raise HttpError(f"{_safe(self.url)}: bad Content-Range {crange!r}") from None
            if first != offset:
                raise HttpError(f"{_safe(self.url)}: server returned range at {first}, asked for {offset}")
            expected = last - first + 1
        else:
            if offset != 0:
                raise HttpError(f"{_safe(self.url)}: server ignores Range requests")
            total = expected = resp.length
        done = 0
        if out is not None:
            want = min(len(out), expected) if expected >= 0 else len(out)
            done = conn.read_into(out[:want])
            if done < want:
                raise ConnectionError(f"connection dropped after {done} of {want} bytes")
        # an unread rest (a server ignoring Range) or a server closing: don't reuse this connection
        return total, done, conn.reusable(resp)

    def fetch(self, offset: int, out: memoryview | None, length: int | None = None) -> tuple[int, int]:
        import ssl

        length = len(out) if out is not None else (length or 1)
        delay = self.backoff
        last: str = ""
        for attempt in range(self.attempts):
            conn = self._take()
            try:
                total, done, reusable = self._request(conn, offset, out, length)
            except HttpError as exc:
                conn.close()
                status = getattr(exc, "status", 0)
                if not status or (status < 500 and status != 429):
                    raise
                last = exc.message
            except OSError as exc:
                conn.close()
                if isinstance(exc, ssl.SSLCertVerificationError):
                    raise DiskError(f"{_safe(self.url)}: TLS certificate not trusted: {exc.verify_message}") from None
                last = f"{_safe(self.url)}: {type(exc).__name__}: {exc}".rstrip(": ")
            except BaseException:
                conn.close()
                raise
            else:
                if reusable:
                    self._give(conn)
                else:
                    conn.close()
                return total, done
            if attempt + 1 < self.attempts:
                log.info("%s; retry %d of %d in %.1fs", last, attempt + 1, self.attempts - 1, delay)
                time.sleep(delay)
                delay *= 2
        raise DiskError(f"{last} (gave up after {self.attempts} attempts)")

    def probe(self, n: int = 65536) -> bytes:
        """Read the first ``n`` bytes (fewer if the file is shorter) and learn the file size."""
        buf = bytearray(n)
        self.size, got = self.fetch(0, memoryview(buf))
        return bytes(buf[:got])

    def read_into(self, offset: int, out: memoryview) -> None:
        if self.size >= 0 and offset + len(out) > self.size:
            raise DiskError(f"{_safe(self.url)}: truncated: expected data at byte {self.size}")
        _total, got = self.fetch(offset, out)
        if got < len(out):
            raise DiskError(f"{_safe(self.url)}: truncated: expected data at byte {offset + got}")

    def data_ranges(self, start: int, end: int) -> list[tuple[int, int]] | None:
        return None

    def sibling(self, name: str) -> HttpFile:
        """The file ``name`` in the same folder, with the same query string (dcPath, dsName)."""
        parts = urlsplit(self.url)
        path = urljoin(parts.path, name)
        return HttpFile(urlunsplit((parts.scheme, parts.netloc, path, parts.query, "")), self.headers, self.ssl_context)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _safe(url: str) -> str:
    """A URL for messages: without userinfo."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


@dataclass(frozen=True)
class LocalSource:
    """A disk image on a local filesystem: any VMDK kind, raw, or qcow2."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def identity(self, depth: int = 0) -> str:
        """Names the bytes: the file's path, size and mtime, and those of every file a text
        descriptor names (extents, parent chain), so a changed extent is never taken for done."""
        try:
            st = self.path.stat()
        except OSError:
            raise DiskError(f"{self.path}: no such file") from None
        ident = f"local:{self.path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
        if st.st_size > 1 << 20 or depth > 32:
            return ident
        from converters.disks.vmdk import looks_like_descriptor, parse_descriptor

        head = self.path.read_bytes()
        if not looks_like_descriptor(head):
            return ident
        try:
            descriptor = parse_descriptor(head, name=str(self.path))
        except DiskError:
            return ident  # open() reports it
        parts = [ident]
        for extent in descriptor.extents:
            if extent.filename:
                try:
                    est = (self.path.parent / extent.filename).stat()
                    parts.append(f"{extent.filename}:{est.st_size}:{est.st_mtime_ns}")
                except OSError:
                    parts.append(f"{extent.filename}:missing")
        if descriptor.parent_hint:
            parent = LocalSource(self.path.parent / descriptor.parent_hint)
            try:
                parts.append(parent.identity(depth + 1))
            except DiskError:
                parts.append(f"{descriptor.parent_hint}:missing")
        return "|".join(parts)

    def describe(self) -> str:
        return str(self.path)

    def open(self):  # -> VirtualDisk
        from converters.disks.image import open_local

        return open_local(self.path)


@dataclass(frozen=True)
class TarMemberSource:
    """A disk stored in a tar archive (an OVA's VMDK), read in place: nothing is extracted."""

    archive: Path
    member: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "archive", Path(self.archive))

    def identity(self) -> str:
        try:
            st = self.archive.stat()
        except OSError:
            raise DiskError(f"{self.archive}: no such file") from None
        return f"tar:{self.archive.resolve()}:{st.st_size}:{st.st_mtime_ns}:{self.member}"

    def describe(self) -> str:
        return f"{self.archive}:{self.member}"

    def open(self):  # -> VirtualDisk
        from converters.disks.image import open_tar_member

        return open_tar_member(self.archive, self.member)


@dataclass(frozen=True)
class HttpSource:
    """A VMDK on a datastore: a descriptor URL (extents resolved beside it) or a monolithic sparse/flat file."""

    url: str
    headers: dict[str, str] = field(default_factory=dict, hash=False)
    ssl_context: ssl.SSLContext | None = field(default=None, hash=False, compare=False)

    def identity(self) -> str:
        return f"http:{_safe(self.url)}"

    def describe(self) -> str:
        return _safe(self.url)

    def open(self):  # -> VirtualDisk
        from converters.disks.image import open_http

        return open_http(HttpFile(self.url, dict(self.headers), self.ssl_context))

    def __repr__(self) -> str:  # never show the session cookie
        return f"HttpSource(url={_safe(self.url)!r})"
