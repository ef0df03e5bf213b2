"""The controller's API calls, on its event loop: one aiohttp session, logged in as kopf logs in.

Every call is a coroutine that sends a JSON body and reads the JSON answer as a dict. The typed client
(``kubernetes``) blocks, so it ran in worker threads: a thread hop, urllib3, and the client's serializing per
call, 0.6 ms of CPU per write against 0.25 ms here (2,000 creates against the fake API server). The session
comes from ``kopf.ConnectionInfo`` (``kube.connection_info``): the same server, TLS verification and
credentials as kopf's watches. On a 401 (a rotated service-account token, an expired exec credential) the
credentials are read again and the call is made once more.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import kopf

from runtime.controller.names import GROUP, VERSION, VMIS, VMS

log = logging.getLogger(__name__)
T = TypeVar("T")

POOL_SIZE = 32  # connections kept open: the writes in flight at once
TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)  # one call; the retry is the caller's (kopf's delay)
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """An API call that failed: the HTTP status (0 when no answer came) and the server's reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}" if status else reason)
        self.status = status
        self.reason = reason


class Api:
    """The API server, as the controller calls it. The session opens on the first call (in the running loop,
    which owns it) and ``close`` ends it."""

    def __init__(self, login: Callable[[], kopf.ConnectionInfo], pool: int = POOL_SIZE) -> None:
        self.login = login
        self.pool = pool
        self.session: aiohttp.ClientSession | None = None
        self.server = ""
        self.headers: dict[str, str] = {}

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call("POST", path, body)

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call("PATCH", path, body, MERGE_PATCH)

    async def delete(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """The object while it terminates (finalizers), or the server's Status once it is gone."""
        return await self.call("DELETE", path, body)

    async def get(self, path: str) -> dict[str, Any]:
        return await self.call("GET", path)

    async def items(self, path: str, selector: str = "") -> list[dict[str, Any]]:
        """The objects of a list call (``path``: a collection), selected by label."""
        listed = await self.call("GET", path + (f"?labelSelector={quote(selector)}" if selector else ""))
        return list(listed.get("items") or [])

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, content_type: str = JSON
    ) -> dict[str, Any]:
        """One request; its answer as a dict. An error status, or no answer, raises ApiError."""
        session = self._session()
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        for attempt in (1, 2):
            headers = {**self.headers, "Accept": JSON}
            if data is not None:
                headers["Content-Type"] = content_type
            try:
                async with session.request(method, self.server + path, data=data, headers=headers) as response:
                    text = await response.read()
                    status, reason = response.status, response.reason or ""
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionResetError) as error:
                # A kept connection the server had closed (it restarted, or its idle timeout passed): once more,
                # on a new one. A write that did land answers the second time as its callers already take it:
                # a create 409 (exists), a patch 409 (its resourceVersion is stale), a delete 404 (gone).
                if attempt == 1:
                    log.debug("%s %s: %s; once more on a new connection", method, path, type(error).__name__)
                    continue
                raise ApiError(0, f"{method} {path}: {type(error).__name__}: {error}") from None
            except (aiohttp.ClientError, TimeoutError) as error:
                raise ApiError(0, f"{method} {path}: {type(error).__name__}: {error}") from None
            if status == 401 and attempt == 1 and self._login_again():
                continue
            if not 200 <= status <= 299:
                raise ApiError(status, _reason(text, reason))
            answer: dict[str, Any] = json.loads(text) if text else {}
            return answer
        raise AssertionError("unreachable")  # the loop returns or raises

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            info = self.login()
            self.server, self.headers = info.server.rstrip("/"), info.as_http_headers()
            connector = aiohttp.TCPConnector(limit=self.pool, ssl=info.as_ssl_context())
            self.session = aiohttp.ClientSession(
                connector=connector, timeout=TIMEOUT, proxy=info.proxy_url, trust_env=info.trust_env
            )
        return self.session

    def _login_again(self) -> bool:
        """Read the credentials again (their source may have rotated them): whether they changed. Credentials
        that cannot be read now (a kubeconfig gone) leave the 401 as the answer."""
        try:
            headers = self.login().as_http_headers()
        except Exception as error:  # kubernetes' ConfigException, OSError: whatever the source raises
            log.warning("the API server refused the credentials (401), and reading them again failed: %s", error)
            return False
        changed = headers != self.headers
        self.headers = headers
        log.info("the API server refused the credentials (401); %s", "read again" if changed else "unchanged")
        return changed


async def ignore(statuses: tuple[int, ...], call: Awaitable[T]) -> T | None:
    """``call``'s answer, or None when it failed with one of ``statuses`` (404: gone already)."""
    try:
        return await call
    except ApiError as error:
        if error.status in statuses:
            return None
        raise


async def newer_exists(call: Awaitable[T]) -> T | None:
    """Run a write that carries a resourceVersion or uid precondition; a 409 (a newer version of the object
    exists, whose watch event will reconcile again) ends it quietly, as None."""
    try:
        return await call
    except ApiError as error:
        if error.status != 409:
            raise
        log.debug("conflict: a newer version is on its way")
        return None


def object_path(plural: str, namespace: str, name: str = "", subresource: str = "") -> str:
    """The API path of a KubeVirt object (``name`` empty: its collection), quoted."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}/{plural}"
    return _named(path, name, subresource)


def core_path(plural: str, namespace: str | None, name: str = "") -> str:
    """The API path of a core (v1) object: a pod, a claim; a node (``namespace`` None); ``name`` empty: the
    collection (of all namespaces when ``namespace`` is None)."""
    if namespace is None:
        return _named(f"/api/v1/{plural}", name, "")
    return _named(f"/api/v1/namespaces/{quote(namespace, safe='')}/{plural}", name, "")


def kind_path(plural: str, namespace: str | None) -> str:
    """The collection of a watched kind, in one namespace or all (None)."""
    if plural in (VMS, VMIS):
        if namespace is None:
            return f"/apis/{GROUP}/{VERSION}/{plural}"
        return object_path(plural, namespace)
    return core_path(plural, namespace)


async def list_uids(api: Api, plural: str, namespace: str | None, selector: str = "") -> set[str]:
    """The uids of the objects of a kind (VMs, instances, pods, PVCs, nodes) that exist now: one list call."""
    return {str(item["metadata"]["uid"]) for item in await api.items(kind_path(plural, namespace), selector)}


def _named(collection: str, name: str, subresource: str) -> str:
    path = collection + (f"/{quote(name, safe='')}" if name else "")
    return path + (f"/{subresource}" if subresource else "")


def _reason(text: bytes, fallback: str) -> str:
    """The message of the server's Status object, else the HTTP reason."""
    try:
        status = json.loads(text)
    except ValueError:
        return fallback
    return str(status.get("message") or status.get("reason") or fallback) if isinstance(status, dict) else fallback
