"""Connecting to a vCenter or ESXi host: the source location, TLS policy, login, and their errors.

TLS is verified by default. pyvmomi silently disables verification for loopback hosts when
no ``sslContext`` is given, so an explicit context is always passed. ``--insecure`` turns
verification off; ``--thumbprint`` pins exactly one certificate: the context then trusts that
certificate alone (hostname checks off, since the pin is the identity), so every later
connection (SOAP or the datastore HTTP endpoint) is held to the same pin. ``--ca-file`` replaces
the system's CAs with a PEM bundle (hostnames still checked).

A plan records the SHA-256 thumbprint of the certificate accepted when it was made (trust on
first use, as ssh's known_hosts); later commands pin it and refuse a changed certificate with
both thumbprints. ``--insecure`` is never recorded. The SOAP connection (and the certificate
check) go through ``HTTPS_PROXY`` unless ``NO_PROXY`` covers the host.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import urllib.request
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPException
from urllib.parse import unquote, urlsplit

from pyVim.connect import SmartConnect
from pyVmomi import vim, vmodl

from core.errors import InputError, SourceError, SourceUnreachableError

DEFAULT_PORT = 443
CONNECT_TIMEOUT = 30  # seconds, per HTTP connection


@dataclass(frozen=True)
class Location:
    """What follows ``vsphere://``: ``user@host[:port][/datacenter]``."""

    user: str
    host: str
    port: int = DEFAULT_PORT
    datacenter: str | None = None

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The display URL: never carries a password."""
        url = f"vsphere://{self.user}@{self.endpoint}"
        return f"{url}/{self.datacenter}" if self.datacenter else url


def parse_location(location: str) -> Location:
    try:
        parts = urlsplit("//" + location)
        port = parts.port
    except ValueError as error:
        raise InputError(f"bad vSphere source {location!r}: {error}") from None
    if parts.password is not None:
        raise InputError(
            "do not put the password in the vSphere source URL: use MIGRATOR_VSPHERE_PASSWORD, --password-file "
            "or the prompt"
        )
    if not parts.username or not parts.hostname:
        raise InputError(f"bad vSphere source {location!r}: expected vsphere://USER@HOST[:PORT][/DATACENTER]")
    datacenter = unquote(parts.path.strip("/")) or None
    return Location(unquote(parts.username), parts.hostname, port or DEFAULT_PORT, datacenter)


def normalise_thumbprint(thumbprint: str) -> str:
    """Lower-case hex without separators; SHA-1 (40) or SHA-256 (64) digits."""
    digits = thumbprint.replace(":", "").replace("-", "").replace(" ", "").lower()
    if len(digits) not in (40, 64) or any(c not in "0123456789abcdef" for c in digits):
        raise InputError(f"bad --thumbprint {thumbprint!r}: expected a SHA-1 or SHA-256 hex digest")
    return digits


def format_thumbprint(digest: str) -> str:
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)).upper()


def https_proxy(host: str) -> tuple[str, int] | None:
    """(proxy host, port) from ``HTTPS_PROXY``/``https_proxy`` for ``host``, unless ``NO_PROXY`` covers it."""
    proxy = urllib.request.getproxies_environment().get("https")
    if not proxy or urllib.request.proxy_bypass_environment(host):
        return None
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"HTTPS_PROXY {proxy!r} is not a proxy URL (http://HOST:PORT)") from None
    if not parts.hostname:
        raise InputError(f"HTTPS_PROXY {proxy!r} is not a proxy URL (http://HOST:PORT)")
    return parts.hostname, port or 80


def _open_socket(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to host:port: direct, or tunnelled with CONNECT through the HTTPS proxy."""
    proxy = https_proxy(host)
    if proxy is None:
        return socket.create_connection((host, port), timeout=timeout)
    tunnel = HTTPConnection(proxy[0], proxy[1], timeout=timeout)
    tunnel.set_tunnel(host, port)
    try:
        tunnel.connect()
    except OSError as error:
        tunnel.close()
        raise OSError(f"through proxy {proxy[0]}:{proxy[1]}: {_reason(error)}") from None
    sock = tunnel.sock
    tunnel.sock = None  # ours now
    assert sock is not None
    return sock


def fetch_certificate(host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> bytes:
    """The DER certificate the server presents (no verification: only to compare or show it)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with _open_socket(host, port, timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as error:
        raise SourceError(f"cannot reach {host}:{port}: {_reason(error)}") from None
    if not der:
        raise SourceError(f"{host}:{port} presented no TLS certificate")
    return der


def certificate_thumbprint(der: bytes, length: int = 64) -> str:
    algorithm = hashlib.sha1 if length == 40 else hashlib.sha256
    return algorithm(der).hexdigest()


def tls_context(
    location: Location,
    *,
    insecure: bool,
    thumbprint: str | None,
    ca_file: str | None = None,
    thumbprint_from_plan: bool = False,
) -> ssl.SSLContext:
    """The context every connection to this source uses (SOAP and datastore HTTP)."""
    if insecure and thumbprint and not thumbprint_from_plan:
        raise InputError("--insecure and --thumbprint contradict each other: give only one")
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if thumbprint:
        expected = normalise_thumbprint(thumbprint)
        der = fetch_certificate(location.host, location.port)
        presented = certificate_thumbprint(der, len(expected))
        if presented != expected and thumbprint_from_plan:
            raise SourceError(
                f"the certificate of {location.endpoint} changed since the plan was made: the plan recorded "
                f"{format_thumbprint(expected)}, the server presents {format_thumbprint(presented)} "
                "(if the change is expected, give --thumbprint with the new one)"
            )
        if presented != expected:
            raise SourceError(
                f"certificate thumbprint mismatch: expected {format_thumbprint(expected)}, "
                f"server presented {format_thumbprint(presented)}"
            )
        # Trust exactly this certificate (cadata alone: the system CAs are not loaded), whoever
        # signed it and whatever names it carries.
        context = ssl.create_default_context(cadata=der)
        context.check_hostname = False
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        # The user vouched for this exact certificate: accept its key size too (vcsim's is 1024-bit RSA).
        context.set_ciphers("DEFAULT:@SECLEVEL=1")
        return context
    if ca_file:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies chain and hostname; only the bundle's CAs
        for path in ca_file.split(os.pathsep):
            try:
                context.load_verify_locations(cafile=path)
            except (OSError, ssl.SSLError) as error:
                raise InputError(f"--ca-file {path}: not a PEM bundle of CA certificates ({_reason(error)})") from None
        return context
    return ssl.create_default_context()


def connect(location: Location, password: str, context: ssl.SSLContext) -> vim.ServiceInstance:
    """Log in; every failure becomes one SourceError line (never with the password)."""
    where = location.endpoint
    proxy = https_proxy(location.host)
    try:
        return SmartConnect(
            host=location.host,
            port=location.port,
            user=location.user,
            pwd=password,
            sslContext=context,
            httpConnectionTimeout=CONNECT_TIMEOUT,
            httpProxyHost=proxy[0] if proxy else None,
            httpProxyPort=proxy[1] if proxy else 80,
        )
    except vim.fault.InvalidLogin:
        raise SourceError(f"login failed for {location.user} on {where}: wrong user name or password") from None
    except ssl.SSLCertVerificationError as error:
        raise SourceError(_verify_failed(location, error)) from None
    except ssl.SSLError as error:
        raise SourceError(f"TLS handshake with {where} failed: {_reason(error)}") from None
    except (socket.gaierror, ConnectionError, TimeoutError) as error:
        raise SourceUnreachableError(f"cannot reach {where}: {_reason(error)}") from None
    except OSError as error:
        raise SourceUnreachableError(f"cannot reach {where}: {_reason(error)}") from None
    except vmodl.MethodFault as fault:
        raise SourceError(f"login to {where} failed: {fault_message(fault)}") from None
    except (HTTPException, vim.fault.HostConnectFault) as error:
        raise SourceError(f"{where} does not answer as a vSphere API endpoint: {_reason(error)}") from None
    except Exception as error:  # pyvmomi raises plain Exceptions for non-SOAP answers
        if password and password in str(error):
            raise SourceError(f"login to {where} failed: {type(error).__name__}") from None
        raise SourceError(f"login to {where} failed: {_reason(error)}") from None


def fault_message(fault: BaseException) -> str:
    """One line from a vSphere fault: its message, else its type name."""
    text = getattr(fault, "msg", None) or ""
    if not text:
        messages = getattr(fault, "faultMessage", None) or []
        text = "; ".join(m.message for m in messages if getattr(m, "message", None))
    name = type(fault).__name__.rsplit(".", 1)[-1]
    text = " ".join(str(text).split())
    return f"{name}: {text}" if text and name not in text else (text or name)


def _verify_failed(location: Location, error: ssl.SSLCertVerificationError) -> str:
    reason = error.verify_message or "certificate verify failed"
    hint = "use --thumbprint SHA256 or --insecure"
    try:
        presented = certificate_thumbprint(fetch_certificate(location.host, location.port))
        hint = f"use --thumbprint {format_thumbprint(presented)} to trust this certificate, or --insecure"
    except SourceError:
        pass
    return f"certificate verify failed for {location.endpoint} ({reason}): {hint}"


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError) and error.reason:
        return str(error.reason).replace("_", " ").lower()
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = " ".join(str(error).split())
    return text or type(error).__name__
