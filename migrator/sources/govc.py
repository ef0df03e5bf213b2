"""govc's environment, which vSphere admins already export: ``GOVC_URL``, ``GOVC_USERNAME``, ``GOVC_PASSWORD``.

``GOVC_URL`` is ``[https://][user[:password]@]host[:port][/sdk]``. It gives the default source
when a command has neither ``--source`` nor a plan; its password (or ``GOVC_PASSWORD``) is used
only for that same host, and never put in a source string, a plan or a log.
(``GOVC_INSECURE`` and ``GOVC_TLS_CA_CERTS`` are the ``--insecure`` and ``--ca-file`` defaults.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from core.errors import InputError


@dataclass(frozen=True)
class GovcTarget:
    user: str | None
    host: str
    port: int | None
    password: str | None

    def source(self) -> str:
        if not self.user:
            raise InputError("GOVC_URL names no user: set GOVC_USERNAME or put USER@ in GOVC_URL")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"vsphere://{self.user}@{host}" + (f":{self.port}" if self.port else "")


def govc_target(environ: dict[str, str] | None = None) -> GovcTarget | None:
    env = os.environ if environ is None else environ
    url = env.get("GOVC_URL", "").strip()
    if not url:
        return None
    try:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        port = parts.port
    except ValueError:
        raise InputError("GOVC_URL is not a URL ([https://][USER@]HOST[:PORT][/sdk])") from None
    if not parts.hostname:
        raise InputError("GOVC_URL names no host")
    user = unquote(parts.username) if parts.username else env.get("GOVC_USERNAME") or None
    password = unquote(parts.password) if parts.password else env.get("GOVC_PASSWORD") or None
    return GovcTarget(user, parts.hostname, port if port not in (None, 443) else None, password)


def default_source() -> str | None:
    """``vsphere://USER@HOST[:PORT]`` from ``GOVC_URL``, or None when it is not set."""
    target = govc_target()
    return target.source() if target else None


def password_for(user: str, host: str) -> str | None:
    """govc's password, when ``GOVC_URL`` names this same user and host."""
    target = govc_target()
    if target is None or target.host.lower() != host.lower() or (target.user and target.user != user):
        return None
    return target.password
