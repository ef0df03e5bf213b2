"""A fake Kubernetes API server over real HTTP (aiohttp on its own thread), for the real clients to talk to.

    with FakeApiServer(crds=[...]) as api:
        api.kubeconfig(tmp_path / "kubeconfig")   # for kubernetes.config / kopf
        ...
        api.objects("virtualmachines.kubevirt.io", "default")

What it does and does not mimic: README.md beside this file."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web

from . import controllers, patches, podexec, tables, typeschema
from .auth import ADMIN_TOKEN, Attributes, Authenticator, User, authorize, authorize_path
from .errors import StatusError, bad_request, gone, method_not_allowed
from .resources import Registry, ResourceType
from .store import Event, Obj, Store, Watcher, bind_pod, route_event

T = TypeVar("T")
log = logging.getLogger(__name__)

VERSION_INFO = {
    "major": "1",
    "minor": "37",
    "gitVersion": "v1.37.0-fakekube",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.22.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
TOKEN = ADMIN_TOKEN  # a system:masters user, as a cluster admin's kubeconfig
WARNINGS = web.RequestKey("warnings", list)
_NOT_FOUND = StatusError(404, "NotFound", "the server could not find the requested resource", details={})


class FakeApiServer:
    """Threaded fake API server; a context manager. All state lives on the server's event loop thread."""

    def __init__(
        self,
        *,
        crds: list[dict[str, Any] | Path | str] | None = None,
        port: int = 0,
        history_size: int = 100_000,
        bookmark_interval: float = 5.0,
        graceful_pod_deletion: bool = True,
        scheduler: bool = False,
        provisioner: bool = False,
        track_managed_fields: bool = True,
        jobs: bool = False,
    ) -> None:
        self._crds = _load_manifests(crds or [])
        self._port = port
        self.history_size = history_size
        self.bookmark_interval = bookmark_interval
        self.graceful_pod_deletion = graceful_pod_deletion
        self.scheduler = scheduler
        self.track_managed_fields = track_managed_fields
        self.provisioner = provisioner
        self.jobs = jobs
        self.url = ""
        self.port = 0
        self.registry = Registry()
        self.auth = Authenticator()
        self.store: Store | None = None
        self._counts: Counter[tuple[str, str, str, str]] = Counter()  # (verb, group, plural, subresource)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._watchers: set[Watcher] = set()
        self._exec: dict[str, podexec.ExecResolver] = {}  # node → how its kubelet runs a command in a pod

    # ---- lifecycle ----------------------------------------------------------------------------------------

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> FakeApiServer:
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready: asyncio.Future[None] | None = None
        started = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            nonlocal ready
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._startup())
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="fakekube", daemon=True)
        self._thread.start()
        started.wait(30)
        if errors:  # e.g. a CRD given to the constructor was refused (422): nothing keeps running
            self._thread.join(5)
            loop.close()
            self._loop = self._thread = None
            raise errors[0]
        return self

    async def _startup(self) -> None:
        loop = asyncio.get_running_loop()
        major, minor, _patch = typeschema.kubernetes_version().split(".")  # also loads the schemas once
        VERSION_INFO.update(major=major, minor=minor, gitVersion=f"v{major}.{minor}.0-fakekube")
        self.store = Store(
            self.registry,
            history_size=self.history_size,
            graceful_pod_deletion=self.graceful_pod_deletion,
            schedule=lambda fn: loop.call_soon(_guarded, fn),
        )
        if self.scheduler:
            controllers.Scheduler(self.store)
        if self.provisioner:
            controllers.Provisioner(self.store)
        if self.jobs:
            controllers.JobController(self.store)
        crd_rt = self.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        for crd in self._crds:
            self.store.create(crd_rt, None, crd)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{self.port}"
        await asyncio.sleep(0)  # let the CRDs become Established before the first request

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        loop = self._loop

        async def shutdown() -> None:
            for watcher in list(self._watchers):
                watcher.queue.put_nowait(None)
            await asyncio.sleep(0)
            if self._runner is not None:
                await self._runner.cleanup()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(15)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(15)
            self._loop = None
            self._thread = None

    # ---- helpers for tests and benchmarks ------------------------------------------------------------------

    def call(self, fn: Callable[[], T]) -> T:
        """Run fn on the server's loop thread (where the store lives) and return its result."""
        if self._loop is None:
            raise RuntimeError("the fake API server is not running")

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)

    def serve_exec(self, node: str, resolver: podexec.ExecResolver | None) -> None:
        """Serve ``pods/exec`` for the pods bound to ``node``: ``resolver(pod, container, command)`` says how its
        kubelet runs the command (an ``ExecTarget``); None stops serving it (an unreachable kubelet)."""
        if resolver is None:
            self._exec.pop(node, None)
        else:
            self._exec[node] = resolver

    def token_for(self, namespace: str, service_account: str) -> str:
        """A bearer token for a service account (system:serviceaccount:<ns>:<name>), authorized by RBAC; valid while
        the ServiceAccount exists (401 otherwise), as bound tokens are."""
        return self.auth.add_service_account(namespace, service_account)

    def kubeconfig(self, path: Path, *, namespace: str = "default", token: str | None = None) -> Path:
        """Write a kubeconfig pointing at this server, for kubernetes.config.load_kube_config and kopf.
        Without token: the cluster admin (system:masters); with one from token_for: that service account."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fakekube", "cluster": {"server": self.url}}],
            "users": [{"name": "fakekube", "user": {"token": token or TOKEN}}],
            "contexts": [
                {"name": "fakekube", "context": {"cluster": "fakekube", "user": "fakekube", "namespace": namespace}}
            ],
            "current-context": "fakekube",
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def resolve(self, resource: str) -> ResourceType:
        """'pods', 'deployments.apps', 'virtualmachines.kubevirt.io', 'vm' or a Kind."""
        plural, _, group = resource.partition(".")
        candidates = [
            rt
            for rt in self.registry.all()
            if (plural in (rt.plural, rt.singular) or plural in rt.short_names or resource == rt.kind)
            and (not group or rt.group == group)
        ]
        if not candidates:
            raise KeyError(f"unknown resource {resource!r}")
        candidates.sort(key=lambda rt: (rt.group != "", rt.group))  # the core group wins, as kubectl's
        return candidates[0]

    def objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Current objects of a resource (copies), sorted by namespace and name."""

        def read() -> list[dict[str, Any]]:
            rt = self.resolve(resource)
            assert self.store is not None
            items = [
                o for ident, o in sorted(self.store.bucket(rt).items()) if namespace is None or ident[0] == namespace
            ]
            return json.loads(json.dumps(items))

        return self.call(read)

    def wait_for(
        self,
        resource: str,
        condition: Callable[[list[dict[str, Any]]], bool],
        *,
        namespace: str | None = None,
        timeout: float = 30.0,
        interval: float = 0.05,
    ) -> list[dict[str, Any]]:
        """Block until condition(objects of resource) holds; returns copies of those objects. The condition runs on
        the server thread with the live objects (read them, never change them), at most every `interval` seconds
        and only after that resource changed: cheaper than polling objects() while a benchmark runs.
        Raises TimeoutError."""
        rt = self.call(lambda: self.resolve(resource))
        assert self._loop is not None and self.store is not None
        loop, store = self._loop, self.store
        done = threading.Event()
        scheduled = False

        def select() -> list[dict[str, Any]]:
            return [o for ident, o in sorted(store.bucket(rt).items()) if namespace is None or ident[0] == namespace]

        def check() -> None:
            nonlocal scheduled
            scheduled = False
            if not done.is_set() and condition(select()):
                done.set()

        def on_event(event: Event) -> None:
            nonlocal scheduled
            if event.key == rt.key and not scheduled and not done.is_set():
                scheduled = True
                loop.call_later(interval, check)

        def install() -> None:
            store.hooks.append(on_event)
            check()

        self.call(install)
        try:
            if not done.wait(timeout):
                raise TimeoutError(f"{resource}: condition not met within {timeout}s")
            return self.call(lambda: json.loads(json.dumps(select())))
        finally:
            self.call(lambda: store.hooks.remove(on_event))

    def compact(self) -> None:
        """Forget the watch history (as etcd compaction): watching from an older resourceVersion gets 410 Gone."""
        self.call(lambda: self.store.compact())  # type: ignore[union-attr]

    @property
    def resource_version(self) -> int:
        return self.call(lambda: self.store.rv)  # type: ignore[union-attr]

    def request_count(self, verb: str | None = None, resource: str | None = None) -> int:
        """Requests served. verb: get, list, watch, create, update, patch, delete, deletecollection, discovery.
        resource: 'pods', 'pods/status', 'virtualmachines.kubevirt.io', 'virtualmachines.kubevirt.io/status'."""
        return count_requests(list(self._counts.items()), verb, resource)

    def reset_counts(self) -> None:
        self._counts.clear()

    # ---- HTTP ----------------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        store = self.store
        assert store is not None
        try:
            response = await self._dispatch(request)
        except StatusError as exc:
            response = _json(exc.status(), exc.code)
        except Exception as exc:  # a bug here must reach the test as a 500 Status, not a hung client
            log.exception("fakekube: internal error on %s %s", request.method, request.path_qs)
            response = _json(StatusError(500, "InternalError", f"Internal error occurred: {exc!r}").status(), 500)
        finally:
            store.field_validation = "Warn"
        warnings = request.get(WARNINGS)
        if warnings and not response.prepared:
            response.headers["Warning"] = ", ".join(
                '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"' for w in warnings[:20]
            )
        return response

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        method = request.method
        user = self.auth.authenticate(request.headers.get("Authorization"))
        if user.name.startswith("system:serviceaccount:"):  # a service account's token dies with it
            _sa, _, rest = user.name.partition("system:serviceaccount:")
            sa_namespace, _, sa_name = rest.partition(":")
            assert self.store is not None
            if self.store.lookup(self.registry.get("", "v1", "serviceaccounts"), sa_namespace, sa_name) is None:
                raise StatusError(401, "Unauthorized", "Unauthorized")
        if not _is_resource_path(path):
            authorize_path(user, path)
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if method == "GET" and path == "/version":
            self._counts[("discovery", "", "", "")] += 1
            return _json(VERSION_INFO)
        if method == "GET" and path == "/api":
            self._counts[("discovery", "", "", "")] += 1
            return _json(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}
                    ],
                }
            )
        if method == "GET" and path == "/apis":
            self._counts[("discovery", "", "", "")] += 1
            return _json(self.registry.api_group_list())
        if method == "GET" and path.startswith("/openapi/v2"):
            return _json(
                {
                    "swagger": "2.0",
                    "info": {"title": "Kubernetes", "version": VERSION_INFO["gitVersion"]},
                    "paths": {},
                    "definitions": {},
                }
            )
        if path.startswith("/fakekube/"):
            return self._debug(method, path, request.query)
        if method == "GET" and path.startswith("/openapi/v3"):
            return _json({"paths": {}})
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 2:
            if len(parts) == 2:
                doc = self.registry.api_group(parts[1])
                if doc is None or method != "GET":
                    raise _NOT_FOUND
                self._counts[("discovery", "", "", "")] += 1
                return _json(doc)
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise _NOT_FOUND
        if not rest:
            doc = self.registry.api_resource_list(group, version)
            if doc is None or method != "GET":
                raise _NOT_FOUND
            self._counts[("discovery", "", "", "")] += 1
            return _json(doc)
        watch_path = rest[0] == "watch"
        if watch_path:
            rest = rest[1:]
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            inner = self.registry.get(group, version, rest[2])
            if inner is not None and inner.namespaced:
                namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise _NOT_FOUND
        rt = self.registry.get(group, version, rest[0])
        if rt is None:
            raise _NOT_FOUND
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in rt.subresources:
            raise _NOT_FOUND
        if rt.namespaced and namespace is None and name is not None:
            raise _NOT_FOUND
        if not rt.namespaced and namespace is not None:
            raise _NOT_FOUND
        q = request.query
        store = self.store
        assert store is not None
        dry_run = q.get("dryRun") == "All"
        # Who writes, for managedFields: fieldManager, else the User-Agent's product (as the real server).
        manager: str | None = (
            q.get("fieldManager") or request.headers.get("User-Agent", "").split("/", 1)[0] or "unknown"
        )
        if not self.track_managed_fields:
            manager = None

        def count(verb: str) -> None:
            """Authorize and count the request; called right before the store operation, with no await between
            (so the per-request decoding settings below cannot mix with another request's)."""
            self._authorize(user, Attributes(verb, rt.group, rt.plural, sub or "", namespace or "", name or ""))
            self._counts[(verb, rt.group, rt.plural, sub or "")] += 1
            store.field_validation = q.get("fieldValidation", "Warn")
            store.warnings = request[WARNINGS] = []

        if sub == "exec" and method in ("GET", "POST"):  # a websocket upgrade, authorized as a create (as 1.30+)
            count("create")
            pod = store.get(rt, namespace, name)
            return await podexec.serve(request, pod, self._exec.get((pod.get("spec") or {}).get("nodeName", "")), q)
        if method == "GET":
            wants_watch = watch_path or q.get("watch", "").lower() in ("true", "1")
            if name is None:
                if wants_watch:
                    count("watch")
                    return await self._watch(request, rt, namespace)
                count("list")
                listed = store.list(
                    rt,
                    namespace,
                    label_selector=q.get("labelSelector"),
                    field_selector=q.get("fieldSelector"),
                    limit=_number(q, "limit", int),
                    continue_token=q.get("continue"),
                    resource_version=q.get("resourceVersion"),
                )
                if tables.wants_table(request.headers.get("Accept", "")):
                    return _json(self._table(rt, listed["items"], listed["metadata"]["resourceVersion"]))
                return _json(listed)
            if wants_watch:  # the legacy /watch/<plural>/<name> form
                count("watch")
                return await self._watch(request, rt, namespace, name=name)
            count("get")
            if tables.wants_table(request.headers.get("Accept", "")):
                return _json(self._table(rt, [store.get(rt, namespace, name)], str(store.rv)))
            return _json(store.get(rt, namespace, name))
        if method == "POST":
            body = await _read_json(request)
            if name is None:
                count("create")
                return _json(store.create(rt, namespace, body, dry_run=dry_run, manager=manager), 201)
            if sub == "binding":
                count("create")
                return _json(bind_pod(store, rt, namespace or "", name, body), 201)
            raise method_not_allowed()
        if method == "PUT" and name is not None:
            body = await _read_json(request)
            count("update")
            if sub == "finalize":
                return _json(self._finalize_namespace(store, rt, name, body))
            return _json(store.update(rt, namespace, name, body, subresource=sub, dry_run=dry_run, manager=manager))
        if method == "PATCH" and name is not None:
            content_type = request.content_type
            raw = await request.read()
            if content_type == patches.APPLY_PATCH:
                try:
                    body = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
                except yaml.YAMLError as exc:
                    raise bad_request(f"error decoding YAML: {exc}") from None
            else:
                body = _loads(raw)
            count("patch")
            obj, created = store.patch(
                rt,
                namespace,
                name,
                content_type,
                body,
                subresource=sub,
                field_manager=q.get("fieldManager"),
                force=q.get("force", "").lower() == "true",
                dry_run=dry_run,
                manager=manager,
            )
            return _json(obj, 201 if created else 200)
        if method == "DELETE":
            raw = await request.read()
            options: Obj = _loads(raw) if raw.strip() else {}
            if not isinstance(options, dict):
                raise bad_request("DeleteOptions must be an object")
            for param in ("propagationPolicy", "gracePeriodSeconds"):
                if param in q:
                    options[param] = _number(q, param, int) if param == "gracePeriodSeconds" else q[param]
            if "orphanDependents" in q:
                options["orphanDependents"] = q["orphanDependents"].lower() == "true"
            if name is None:
                count("deletecollection")
                return _json(self._delete_collection(store, rt, namespace, q, options, dry_run))
            if sub is not None:
                raise method_not_allowed()
            count("delete")
            obj, deleted_now = store.delete(rt, namespace, name, options, dry_run=dry_run)
            if deleted_now and not rt.custom and rt.key != ("", "pods"):
                return _json(
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Success",
                        "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": obj["metadata"]["uid"]},
                    }
                )
            return _json(store.present(rt, obj))
        raise method_not_allowed()

    def _debug(self, method: str, path: str, q: Any) -> web.Response:
        """Inspection for tests and benchmarks running the server in another process (see process.py); not part
        of the Kubernetes API (admin token only)."""
        if path == "/fakekube/counts":
            rows = [
                {"verb": v, "group": g, "resource": p, "subresource": sub, "count": n}
                for (v, g, p, sub), n in sorted(self._counts.items())
            ]
            return _json({"counts": rows})
        if path == "/fakekube/objects":
            try:
                rt = self.resolve(q.get("resource", ""))
            except KeyError:
                raise _NOT_FOUND from None
            assert self.store is not None
            namespace = q.get("namespace")
            items = [o for ident, o in sorted(self.store.bucket(rt).items()) if not namespace or ident[0] == namespace]
            return _json({"items": items, "resourceVersion": str(self.store.rv)})
        if path == "/fakekube/tally":
            # How many objects there are, and how many have ``value`` (any non-empty one without it) at the dotted
            # ``field``: what a benchmark polls for, without serializing every object on each poll.
            try:
                rt = self.resolve(q.get("resource", ""))
            except KeyError:
                raise _NOT_FOUND from None
            assert self.store is not None
            namespace, field, wanted = q.get("namespace"), q.get("field", ""), q.get("value")
            total = matching = 0
            for ident, obj in self.store.bucket(rt).items():
                if namespace and ident[0] != namespace:
                    continue
                total += 1
                found: Any = obj
                for key in field.split(".") if field else ():
                    found = found.get(key) if isinstance(found, dict) else None
                matching += (found == wanted) if wanted is not None else bool(found)
            return _json({"total": total, "matching": matching})
        if path == "/fakekube/compact" and method == "POST":
            assert self.store is not None
            self.store.compact()
            return _json({"compacted": self.store.compacted})
        raise _NOT_FOUND

    def _table(self, rt: ResourceType, items: list[Obj], resource_version: str) -> Obj:
        try:
            return tables.table(rt, items, resource_version)
        except ValueError as exc:  # a printer column's JSONPath this fake does not evaluate
            raise StatusError(500, "InternalError", str(exc)) from None

    def _authorize(self, user: User, attrs: Attributes) -> None:
        if user.is_admin:
            return
        store = self.store
        assert store is not None

        def objects(plural: str) -> list[Obj]:
            return list(store.buckets.get(("rbac.authorization.k8s.io", plural), {}).values())

        authorize(user, attrs, objects)

    def _delete_collection(
        self, store: Store, rt: ResourceType, namespace: str | None, q: Any, options: Obj, dry_run: bool
    ) -> Obj:
        match = store.matcher(rt, namespace, q.get("labelSelector"), q.get("fieldSelector"))
        deleted = []
        for _ident, obj in sorted(store.bucket(rt).items()):
            if match(obj):
                try:
                    gone_obj, _ = store.delete(
                        rt, obj["metadata"].get("namespace"), obj["metadata"]["name"], options, dry_run=dry_run
                    )
                except StatusError:
                    continue
                deleted.append(gone_obj)
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(store.rv)},
            "items": deleted,
        }

    def _finalize_namespace(self, store: Store, rt: ResourceType, name: str, body: Obj) -> Obj:
        old = store.lookup(rt, None, name)
        if old is None:
            raise StatusError(404, "NotFound", f'namespaces "{name}" not found')
        new = json.loads(json.dumps(old))
        new.setdefault("spec", {})["finalizers"] = (body.get("spec") or {}).get("finalizers") or []
        return store._commit_update(rt, old, new, subresource="status")

    async def _watch(
        self, request: web.Request, rt: ResourceType, namespace: str | None, name: str | None = None
    ) -> web.StreamResponse:
        store = self.store
        assert store is not None
        q = request.query
        field_selector = q.get("fieldSelector")
        if name is not None:
            field_selector = ",".join(filter(None, [field_selector, f"metadata.name={name}"]))
        match = store.matcher(rt, namespace, q.get("labelSelector"), field_selector)
        timeout = _number(q, "timeoutSeconds", float)
        bookmarks = q.get("allowWatchBookmarks", "").lower() in ("true", "1")
        send_initial = q.get("sendInitialEvents", "").lower() == "true"
        if send_initial and not bookmarks:
            raise StatusError(
                422,
                "Invalid",
                'ListOptions.meta.k8s.io "" is invalid: sendInitialEvents: Forbidden: '
                "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled "
                "and allowWatchBookmarks is set",
            )
        if send_initial and q.get("resourceVersionMatch") != "NotOlderThan":
            raise StatusError(
                422,
                "Invalid",
                'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            )
        rv_param = q.get("resourceVersion") or ""
        start_rv: int | None = None
        if rv_param not in ("", "0") and not send_initial:
            try:
                start_rv = int(rv_param)
            except ValueError:
                raise bad_request(f"invalid resource version: {rv_param}") from None

        response = web.StreamResponse(
            status=200, headers={"Content-Type": "application/json", "Cache-Control": "no-cache"}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)

        # From here to the registration nothing awaits: no event can slip between the snapshot and the watch.
        queue: asyncio.Queue[tuple[str, Event] | None] = asyncio.Queue()
        watcher = Watcher(rt.key, match, queue)
        first: list[bytes] = []
        if start_rv is None:
            for _ident, obj in sorted(store.bucket(rt).items()):
                if match(obj):
                    first.append(_encode("ADDED", store.present(rt, obj)))
            if send_initial and bookmarks:
                first.append(self._bookmark(rt, store.rv, initial_end=True))
        elif start_rv < store.compacted:
            err = gone(f"too old resource version: {start_rv} ({store.compacted})").status()
            await response.write(json.dumps({"type": "ERROR", "object": err}).encode() + b"\n")
            await response.write_eof()
            return response
        else:
            backlog = []
            for event in reversed(store.history):
                if event.rv <= start_rv:
                    break
                if event.key == rt.key:
                    backlog.append(event)
            for event in reversed(backlog):
                route_event(watcher, event)
                event.release()
        store.watchers.setdefault(rt.key, set()).add(watcher)
        self._watchers.add(watcher)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        try:
            if first:
                await response.write(b"".join(first))
            while True:
                wait = self.bookmark_interval if bookmarks else 30.0  # also how often a gone client is noticed
                if deadline is not None:
                    wait = min(wait, deadline - loop.time())
                if wait <= 0:
                    if bookmarks and queue.empty():
                        await response.write(self._bookmark(rt, store.rv))
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    if request.transport is None or request.transport.is_closing():
                        break  # the client went away
                    if deadline is not None and loop.time() >= deadline:
                        continue  # the final bookmark and the close happen at the top of the loop
                    if bookmarks and queue.empty():
                        await response.write(self._bookmark(rt, store.rv))
                    continue
                if item is None:
                    break
                chunks = [item[1].encode(item[0], rt.api_version)]
                stop = False
                while not queue.empty() and len(chunks) < 500:
                    more = queue.get_nowait()
                    if more is None:
                        stop = True
                        break
                    chunks.append(more[1].encode(more[0], rt.api_version))
                await response.write(b"".join(chunks))
                if stop:
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            store.watchers.get(rt.key, set()).discard(watcher)
            self._watchers.discard(watcher)
        try:
            await response.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    def _bookmark(self, rt: ResourceType, rv: int, *, initial_end: bool = False) -> bytes:
        meta: Obj = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return _encode("BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta})


def count_requests(counts: list[tuple[tuple[str, str, str, str], int]], verb: str | None, resource: str | None) -> int:
    want_plural = want_group = want_sub = None
    if resource is not None:
        base, _, want_sub = resource.partition("/")
        want_plural, _, want_group = base.partition(".")
    total = 0
    for (v, group, plural, sub), n in counts:
        if verb is not None and v != verb:
            continue
        if want_plural is not None and plural != want_plural:
            continue
        if want_group and group != want_group:
            continue
        if want_sub and sub != want_sub:
            continue
        total += n
    return total


def _load_manifests(items: list[dict[str, Any] | Path | str]) -> list[dict[str, Any]]:
    """CRDs as dicts, or YAML files (every document of a multi-document file)."""
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict):
            out.append(item)
        else:
            out.extend(doc for doc in yaml.safe_load_all(Path(item).read_text()) if doc)
    return out


def _is_resource_path(path: str) -> bool:
    parts = path.strip("/").split("/")
    return (parts[0] == "api" and len(parts) > 2) or (parts[0] == "apis" and len(parts) > 3)


def _number(q: Any, name: str, kind: Callable[[str], T]) -> T | None:
    if not q.get(name):
        return None
    try:
        return kind(q[name])
    except ValueError:
        raise bad_request(f"invalid {name}: {q[name]!r}") from None


def _guarded(fn: Callable[[], None]) -> None:
    try:
        fn()
    except StatusError:
        pass


def _encode(type_: str, obj: Obj) -> bytes:
    return json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(obj, separators=(",", ":")).encode(), status=status, content_type="application/json"
    )


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError as exc:
        raise bad_request(f"error decoding request body: {exc}") from None


async def _read_json(request: web.Request) -> Any:
    raw = await request.read()
    if request.content_type in ("application/yaml", "application/x-yaml"):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise bad_request(f"error decoding YAML: {exc}") from None
    body = _loads(raw)
    if body is None:
        raise bad_request("the request body is empty")
    return body
