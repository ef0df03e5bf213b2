"""One HTTP/1.1 connection for the disk engine's ranged GETs: plain or TLS, direct or through a
CONNECT proxy, kept alive between requests, bodies read straight into the caller's buffer.

Why not http.client (the engine used it until issue 18's third session): a disk over HTTPS is
CPU-bound on TLS on both ends, and http.client's socket lets OpenSSL read the socket itself, two
``recv`` calls per 16 KiB record (its 5-byte header, then the rest), each one also sending the
TCP acknowledgements that run the server's transmit path in our time. Here the socket is read a
MiB at a time into an ``ssl.MemoryBIO`` and OpenSSL decrypts from memory (``SSLObject``, the
same ``SSLContext``: verification, thumbprint pinning and the hostname check are unchanged).
Measured on the simulator's datastore (4 GiB in 16 MiB ranges on one connection, CPU seconds,
medians of 3, load ~3.5): http.client 3.00 s (1.90 user + 1.10 system), this client 2.80 s
(2.00 + 0.68); the whole ``bench-disks`` HTTP command 4.09 s against 3.80 s. The system time
saved is the socket reads; the user time added is the copy into the MemoryBIO. pycurl was not
taken: it would need the caller's ``SSLContext`` (a pinned certificate, a CA file) translated
into curl options, and hands the body over in 16 KiB Python callbacks.

Only what the engine needs: GET, ``Content-Length`` or read-to-close bodies (a chunked 2xx body
is refused with a clear error), keep-alive, ``Connection: close``. Anything that goes wrong is
an ``OSError`` (``ProtocolError`` for a malformed answer), which the engine retries.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

RECEIVE = 1 << 20  # bytes asked of the socket at a time (TLS): one call per MiB, not two per record
MAX_HEAD = 64 << 10  # a response's status line and headers, at most


class ProtocolError(OSError):
    """The server's answer is not HTTP/1.x as expected (bad status line, oversize headers, ...)."""


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    length: int  # Content-Length, or -1: the body ends when the server closes
    will_close: bool


class Connection:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        context: ssl.SSLContext | None,
        timeout: float,
        proxy: tuple[str, int] | None = None,
        proxy_authorization: str | None = None,
    ) -> None:
        """``context``: TLS with it (to ``host``, through a CONNECT tunnel if ``proxy``); None: plain
        HTTP (to the proxy itself if ``proxy``: the caller asks for the absolute URL)."""
        self.host = host
        self.port = port
        self.context = context
        self.timeout = timeout
        self.proxy = proxy
        self.proxy_authorization = proxy_authorization
        self.sock: socket.socket | None = None
        self._tls: ssl.SSLObject | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._raw = bytearray(RECEIVE)
        self._rest = memoryview(b"")  # body bytes that came with the headers
        self._left = 0  # body bytes of the current response not read yet (-1: until close)

    # -- connection ----------------------------------------------------------------
    def connect(self) -> None:
        address = self.proxy or (self.host, self.port)
        self.sock = socket.create_connection(address, timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.context is None:
            return
        if self.proxy is not None:
            self._tunnel()
        self._tls = self.context.wrap_bio(self._incoming, self._outgoing, server_hostname=self.host)
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._receive()
        self._flush()

    def _tunnel(self) -> None:
        """CONNECT host:port through the proxy (plain text), then TLS runs inside to the server."""
        name = f"[{self.host}]" if ":" in self.host else self.host
        lines = [f"CONNECT {name}:{self.port} HTTP/1.1", f"Host: {name}:{self.port}"]
        if self.proxy_authorization:
            lines.append(f"Proxy-Authorization: {self.proxy_authorization}")
        self._send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        status, reason, _headers = self._head()
        if status != 200:
            raise OSError(f"Tunnel connection failed: {status} {reason}".rstrip())
        if self._rest:
            raise ProtocolError("the proxy sent bytes before the TLS handshake")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._tls = None

    # -- bytes in and out -------------------------------------------------------------
    def _flush(self) -> None:
        assert self.sock is not None
        if self._outgoing.pending:
            self.sock.sendall(self._outgoing.read())

    def _receive(self) -> None:
        """One read of the socket (up to RECEIVE bytes) into the TLS input."""
        assert self.sock is not None
        n = self.sock.recv_into(self._raw)
        if not n:
            raise ConnectionResetError("the server closed the connection")
        self._incoming.write(memoryview(self._raw)[:n])

    def _send(self, data: bytes) -> None:
        assert self.sock is not None
        if self._tls is None:
            self.sock.sendall(data)
            return
        self._tls.write(data)
        self._flush()

    def _read_some(self, out: memoryview) -> int:
        """Read at least one byte of the stream into ``out``; 0 when the server closed it."""
        if self._rest:
            n = min(len(out), len(self._rest))
            out[:n] = self._rest[:n]
            self._rest = self._rest[n:]
            return n
        assert self.sock is not None
        if self._tls is None:
            return self.sock.recv_into(out)
        while True:
            try:
                return self._tls.read(len(out), out)
            except ssl.SSLWantReadError:
                if not self._refill():
                    return 0
            except ssl.SSLZeroReturnError:  # close_notify
                return 0

    def _refill(self) -> int:
        """TLS: answer what OpenSSL has to send (a TLS 1.3 key update), then read the socket once
        (up to RECEIVE bytes) into its input; 0 when the server closed the connection."""
        assert self.sock is not None
        if self._outgoing.pending:
            self._flush()
        n = self.sock.recv_into(self._raw)
        if n:
            self._incoming.write(memoryview(self._raw)[:n])
        return n

    def _head(self) -> tuple[int, str, dict[str, str]]:
        """Read a status line and headers; what follows them is kept for the body."""
        head = bytearray()
        view = memoryview(bytearray(16 << 10))
        searched = 0
        while (end := head.find(b"\r\n\r\n", searched)) < 0:
            if len(head) > MAX_HEAD:
                raise ProtocolError(f"response headers longer than {MAX_HEAD} bytes")
            n = self._read_some(view)
            if not n:
                raise ConnectionResetError("the server closed the connection without a response")
            searched = max(0, len(head) - 3)
            head += view[:n]
        self._rest = memoryview(bytes(head[end + 4 :]))
        lines = head[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError(f"bad header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        self._version = parts[0]
        return int(parts[1]), parts[2] if len(parts) > 2 else "", headers

    # -- requests --------------------------------------------------------------------
    def get(self, target: str, headers: dict[str, str]) -> Response:
        """Send a GET for ``target`` and read the answer's head; then ``read_into`` reads its body."""
        if self.sock is None:
            self.connect()
        default = 443 if self.context is not None else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        lines = [f"GET {target} HTTP/1.1", f"Host: {host}" if self.port == default else f"Host: {host}:{self.port}"]
        lines.append("Accept-Encoding: identity")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        status, reason, fields = self._head()
        while 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            status, reason, fields = self._head()
        connection = fields.get("connection", "").lower()
        will_close = "close" in connection or (self._version == "HTTP/1.0" and "keep-alive" not in connection)
        length = -1
        if "transfer-encoding" in fields:
            if 200 <= status < 300:
                raise ProtocolError(f"unsupported Transfer-Encoding {fields['transfer-encoding']!r}")
            will_close = True  # an error's body is never read: this connection is not reused
        elif "content-length" in fields:
            try:
                length = int(fields["content-length"])
            except ValueError:
                raise ProtocolError(f"bad Content-Length {fields['content-length']!r}") from None
        else:
            will_close = True
        self._left = length
        return Response(status, reason, fields, length, will_close)

    def read_into(self, out: memoryview) -> int:
        """Fill ``out`` with the body (less if it ends first); returns the bytes read."""
        want = len(out) if self._left < 0 else min(len(out), self._left)
        done = 0
        tls = self._tls
        while done < want:
            if self._rest or tls is None:
                n = self._read_some(out[done:want])
            else:  # the loop of a disk read, once per 16 KiB record: kept short
                try:
                    n = tls.read(want - done, out[done:want])
                except ssl.SSLWantReadError:
                    n = self._refill()
                    if n:
                        continue
                except ssl.SSLZeroReturnError:
                    n = 0
            if not n:
                if self._left >= 0:
                    raise ConnectionResetError(f"connection dropped after {done} of {want} bytes")
                break
            done += n
        if self._left >= 0:
            self._left -= done
        return done

    def reusable(self, response: Response) -> bool:
        """The whole body was read and the server keeps the connection open."""
        return not response.will_close and self._left == 0 and not self._rest
