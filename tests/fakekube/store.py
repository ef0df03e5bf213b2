"""The object store behind the fake API server: what etcd plus the generic registry, the admission plugins, the
garbage collector, the namespace controller and the CRD finalizer do on a real cluster.

Everything here runs on the server's event loop thread; callers outside it go through the server."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from . import patches, typeschema
from .errors import (
    StatusError,
    already_exists,
    bad_request,
    conflict,
    forbidden,
    gone,
    invalid,
    method_not_allowed,
    not_found,
)
from .resources import COMMON_FIELDS, Registry, ResourceType, resource_from_crd
from .schema import CrdSchema, structural_errors
from .selection import Matcher, parse_field_selector, parse_label_selector

Obj = dict[str, Any]
Key = tuple[str, str]  # (group, plural)
Ident = tuple[str, str]  # (namespace or "", name)

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # what the apiserver's generateName draws from
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
WORKLOADS = {("apps", "deployments"), ("apps", "daemonsets"), ("apps", "replicasets"), ("apps", "statefulsets")}
BINDINGS = {("rbac.authorization.k8s.io", "rolebindings"), ("rbac.authorization.k8s.io", "clusterrolebindings")}

_RFC1123 = (
    "must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_RULE = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)
_POD_UPDATE = (
    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
    "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deep(obj: Any) -> Any:
    """Deep copy of JSON data (faster than copy.deepcopy)."""
    return json.loads(json.dumps(obj))


class Event:
    """One change, kept in the history as compact JSON (the live dicts are dropped after the fan-out)."""

    __slots__ = ("rv", "key", "type", "raw", "old_raw", "api_version", "_obj", "_old", "_encoded")

    def __init__(self, rv: int, key: Key, type_: str, obj: Obj, old: Obj | None, raw: bytes, old_raw: bytes | None):
        self.rv = rv
        self.key = key
        self.type = type_  # ADDED, MODIFIED, DELETED
        self.raw = raw
        self.old_raw = old_raw
        self.api_version = obj.get("apiVersion", "")
        self._obj: Obj | None = obj
        self._old: Obj | None = old
        self._encoded: dict[tuple[str, str], bytes] | None = None

    @property
    def obj(self) -> Obj:
        if self._obj is None:
            self._obj = json.loads(self.raw)
        return self._obj

    @property
    def old(self) -> Obj | None:
        if self._old is None and self.old_raw is not None:
            self._old = json.loads(self.old_raw)
        return self._old

    def release(self) -> None:
        self._obj = self._old = None

    def encode(self, type_: str, api_version: str) -> bytes:
        if api_version == self.api_version:
            return b'{"type":"' + type_.encode() + b'","object":' + self.raw + b"}\n"
        if self._encoded is None:
            self._encoded = {}
        cached = self._encoded.get((type_, api_version))
        if cached is None:
            obj = {**json.loads(self.raw), "apiVersion": api_version}
            cached = json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n"
            self._encoded[(type_, api_version)] = cached
        return cached


@dataclass(eq=False)
class Watcher:
    key: Key
    match: Callable[[Obj], bool]
    queue: asyncio.Queue[tuple[str, Event] | None]


class Store:
    def __init__(
        self,
        registry: Registry,
        *,
        history_size: int = 100_000,
        graceful_pod_deletion: bool = True,
        schedule: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.registry = registry
        self.rv = 0
        self.buckets: dict[Key, dict[Ident, Obj]] = {}
        self.history: deque[Event] = deque()
        self._raw: dict[tuple[Key, Ident], bytes] = {}  # each object's last JSON, the `old` of its next event
        self.history_size = history_size
        self.compacted = 0  # events with rv <= compacted are no longer replayable
        self.watchers: dict[Key, set[Watcher]] = {}
        self.uids: dict[str, tuple[Key, Ident]] = {}
        self.dependents: dict[str, set[tuple[Key, Ident]]] = {}
        self.schemas: dict[tuple[str, str, str], CrdSchema] = {}
        self.graceful_pod_deletion = graceful_pod_deletion
        self._type_schemas: dict[tuple[str, str, str], typeschema.Schema | None] = {}
        # Per request, set by the server (the loop runs one request's store call at a time).
        self.field_validation = "Warn"
        self.warnings: list[str] = []
        self.hooks: list[Callable[[Event], None]] = []  # controllers watching every event (see controllers.py)
        self.schedule = schedule or (lambda fn: fn())
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(self.registry.get("", "v1", "namespaces"), None, {"metadata": {"name": ns}})
        everything = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
        self.create(
            self.registry.get("rbac.authorization.k8s.io", "v1", "clusterroles"),
            None,
            {
                "metadata": {"name": "cluster-admin", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
                "rules": [everything],
            },
        )

    # ---- reading -------------------------------------------------------------------------------------------

    def bucket(self, rt: ResourceType) -> dict[Ident, Obj]:
        return self.buckets.setdefault(rt.key, {})

    def _ident(self, rt: ResourceType, namespace: str | None, name: str) -> Ident:
        return ((namespace or "") if rt.namespaced else "", name)

    def lookup(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        return self.bucket(rt).get(self._ident(rt, namespace, name))

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self.lookup(rt, namespace, name)
        if obj is None:
            raise not_found(rt.plural, rt.group, name)
        return self.present(rt, obj)

    def present(self, rt: ResourceType, obj: Obj) -> Obj:
        if obj.get("apiVersion") != rt.api_version:
            return {**obj, "apiVersion": rt.api_version}
        return obj

    def matcher(
        self, rt: ResourceType, namespace: str | None, label_selector: str | None, field_selector: str | None
    ) -> Callable[[Obj], bool]:
        supported = COMMON_FIELDS + rt.fields + tuple(rt.selectable_fields)
        labels: Matcher | None = parse_label_selector(label_selector)
        fields: Matcher | None = parse_field_selector(field_selector, supported)
        ns = namespace if rt.namespaced else None

        def match(obj: Obj) -> bool:
            if ns and obj["metadata"].get("namespace") != ns:
                return False
            if labels is not None and not labels(obj):
                return False
            return fields is None or fields(obj)

        return match

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
    ) -> Obj:
        match = self.matcher(rt, namespace, label_selector, field_selector)
        if resource_version and resource_version != "0" and not continue_token:
            try:
                wanted = int(resource_version)
            except ValueError:
                raise bad_request(f"invalid resource version: {resource_version}") from None
            if wanted > self.rv:
                raise StatusError(504, "Timeout", f"Too large resource version: {wanted}, current: {self.rv}")
        start: Ident | None = None
        if continue_token:
            try:
                token = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                start = (token["ns"], token["name"])
                if int(token["rv"]) <= self.compacted:
                    raise gone("The provided continue parameter is too old to display a consistent list result.")
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid") from None
        items: list[Obj] = []
        more = False
        remaining = 0
        for ident in sorted(self.bucket(rt)):
            if start is not None and ident <= start:
                continue
            obj = self.bucket(rt)[ident]
            if not match(obj):
                continue
            if limit and len(items) >= limit:
                more = True
                remaining += 1
                continue
            items.append(obj)
        meta: Obj = {"resourceVersion": str(self.rv)}
        if more:
            last = items[-1]["metadata"]
            token = {"rv": self.rv, "ns": last.get("namespace", ""), "name": last["name"]}
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            meta["remainingItemCount"] = remaining
        if rt.custom:
            out_items = [self.present(rt, o) for o in items]
        else:  # typed lists of built-ins carry no kind/apiVersion on their items
            out_items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items]
        return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": meta, "items": out_items}

    # ---- writing -------------------------------------------------------------------------------------------

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def _emit(self, key: Key, ident: Ident, type_: str, obj: Obj, old: Obj | None) -> None:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        old_raw = self._raw.pop((key, ident), None) if old is not None else None
        if type_ != "DELETED":
            self._raw[(key, ident)] = raw
        event = Event(int(obj["metadata"]["resourceVersion"]), key, type_, obj, old, raw, old_raw)
        self.history.append(event)
        while len(self.history) > self.history_size:
            self.compacted = self.history.popleft().rv
        for watcher in self.watchers.get(key, ()):
            route_event(watcher, event)
        for hook in self.hooks:
            hook(event)
        event.release()

    def compact(self) -> None:
        """Forget the event history, as etcd compaction does: watches from older versions get 410 Gone."""
        self.history.clear()
        self.compacted = self.rv

    def _index(self, key: Key, ident: Ident, old: Obj | None, new: Obj | None) -> None:
        if old is not None:
            self.uids.pop(old["metadata"]["uid"], None)
            for ref in old["metadata"].get("ownerReferences") or []:
                deps = self.dependents.get(ref.get("uid", ""))
                if deps is not None:
                    deps.discard((key, ident))
                    if not deps:
                        del self.dependents[ref["uid"]]
        if new is not None:
            self.uids[new["metadata"]["uid"]] = (key, ident)
            for ref in new["metadata"].get("ownerReferences") or []:
                self.dependents.setdefault(ref.get("uid", ""), set()).add((key, ident))

    def _store(self, rt: ResourceType, obj: Obj, old: Obj | None, type_: str) -> Obj:
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._next_rv())
        ident = (meta.get("namespace", ""), meta["name"])
        self.bucket(rt)[ident] = obj
        self._index(rt.key, ident, old, obj)
        self._emit(rt.key, ident, type_, obj, old)
        return obj

    def _remove(self, rt: ResourceType, obj: Obj) -> Obj:
        final = deep(obj)
        meta = final["metadata"]
        ident = (meta.get("namespace", ""), meta["name"])
        self.bucket(rt).pop(ident, None)
        self._index(rt.key, ident, obj, None)
        meta["resourceVersion"] = str(self._next_rv())
        self._emit(rt.key, ident, "DELETED", final, obj)
        uid = meta["uid"]
        self.schedule(lambda: self._gc_after_removal(uid, meta.get("ownerReferences") or [], rt, ident))
        return final

    def create(
        self, rt: ResourceType, namespace: str | None, body: Obj, *, dry_run: bool = False, manager: str | None = None
    ) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be an object")
        obj = deep(body)
        self._check_kind(rt, obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace or meta.get("namespace") or "default"
            ns = self.lookup(self.registry.get("", "v1", "namespaces"), None, meta["namespace"])
            if ns is None:
                raise not_found("namespaces", "", meta["namespace"])
            if ns["metadata"].get("deletionTimestamp"):
                raise forbidden(
                    rt.plural,
                    rt.group,
                    meta.get("name") or meta.get("generateName", ""),
                    f"unable to create new content in namespace {meta['namespace']} because it is being terminated",
                )
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if meta.get("generateName"):
                for _ in range(8):
                    name = meta["generateName"] + "".join(random.choices(_NAME_CHARS, k=5))
                    if self.lookup(rt, namespace, name) is None:
                        break
                meta["name"] = name
            else:
                raise invalid(
                    rt.kind,
                    rt.group,
                    "",
                    [("FieldValueRequired", "metadata.name", "Required value: name or generateName is required")],
                )
        name = meta["name"]
        if self.lookup(rt, namespace, name) is not None:
            raise already_exists(rt.plural, rt.group, name)
        if rt.custom:
            crd = self._crd_of(rt)
            if crd is not None and crd["metadata"].get("deletionTimestamp"):
                raise method_not_allowed()
        for drop in (
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ):
            meta.pop(drop, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if rt.has_status or rt.custom:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        self._normalize(rt, obj)
        self._admit_create(rt, obj)
        self._validate(rt, obj, None)
        if manager is not None:
            meta.pop("managedFields", None)
            self._track_update(rt, None, obj, None, manager)
        if dry_run:
            meta["resourceVersion"] = str(self.rv)
            return self.present(rt, obj)
        stored = self._store(rt, obj, None, "ADDED")
        self._after_create(rt, stored)
        return self.present(rt, stored)

    def _check_kind(self, rt: ResourceType, obj: Obj) -> None:
        kind = obj.get("kind")
        api_version = obj.get("apiVersion")
        if rt.custom and not kind:  # custom resources are decoded as unstructured, which needs both
            raise bad_request(f"Object 'Kind' is missing in '{json.dumps(obj)[:200]}'")
        if rt.custom and not api_version:
            raise bad_request(f"Object 'apiVersion' is missing in '{json.dumps(obj)[:200]}'")
        if kind and kind != rt.kind:
            raise bad_request(f"the object provided is unrecognized (kind {kind} does not match the URL's {rt.kind})")
        if api_version and api_version != rt.api_version:
            group = api_version.rpartition("/")[0]
            if group != rt.group or api_version.rpartition("/")[2] not in rt.versions:
                raise bad_request(
                    f"the API version in the data ({api_version}) does not match "
                    f"the expected API version ({rt.api_version})"
                )
        obj["kind"] = rt.kind
        obj["apiVersion"] = rt.api_version

    def update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: Obj,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        require_rv: bool = True,
        manager: str | None = None,
    ) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be an object")
        old = self.lookup(rt, namespace, name)
        if old is None:
            raise not_found(rt.plural, rt.group, name)
        new = deep(body)
        self._check_kind(rt, new)
        meta = new.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        if (
            rt.namespaced
            and meta.get("namespace")
            and meta["namespace"] != (namespace or old["metadata"].get("namespace"))
        ):
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        sent_rv = meta.get("resourceVersion")
        if sent_rv:
            if sent_rv != old["metadata"]["resourceVersion"]:
                raise conflict(rt.plural, rt.group, name)
        elif require_rv and rt.custom:
            raise invalid(
                rt.kind,
                rt.group,
                name,
                [
                    (
                        "FieldValueInvalid",
                        "metadata.resourceVersion",
                        "Invalid value: 0x0: must be specified for an update",
                    )
                ],
            )
        return self._commit_update(rt, old, new, subresource=subresource, dry_run=dry_run, manager=manager)

    def _commit_update(
        self,
        rt: ResourceType,
        old: Obj,
        new: Obj,
        *,
        subresource: str | None,
        dry_run: bool = False,
        manager: str | None = None,
    ) -> Obj:
        """Apply an update (full new object) with the registry's rules, then store it if anything changed."""
        old_meta = old["metadata"]
        name = old_meta["name"]
        if subresource == "status":
            result = deep(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
        else:
            result = new
            meta = result.setdefault("metadata", {})
            if rt.has_status:
                if "status" in old:
                    result["status"] = deep(old["status"])
                else:
                    result.pop("status", None)
            for keep in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
                if keep in old_meta:
                    meta[keep] = old_meta[keep]
                else:
                    meta.pop(keep, None)
            meta["name"] = name
            if rt.namespaced:
                meta["namespace"] = old_meta["namespace"]
            else:
                meta.pop("namespace", None)
            if "managedFields" not in meta and "managedFields" in old_meta:
                meta["managedFields"] = old_meta["managedFields"]
            if old_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if added:
                    raise invalid(
                        rt.kind,
                        rt.group,
                        name,
                        [
                            (
                                "FieldValueForbidden",
                                "metadata.finalizers",
                                "Forbidden: no new finalizers can be added if the object is being deleted, "
                                f"found new finalizers {json.dumps(sorted(added))}",
                            )
                        ],
                    )
        result["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        self._normalize(rt, result, subresource)
        self._admit_update(rt, old, result, subresource)
        self._validate(rt, result, old)
        if _spec_part(rt, result) != _spec_part(rt, old) and "generation" in old_meta:
            result["metadata"]["generation"] = old_meta["generation"] + 1
        if manager is not None:
            self._track_update(rt, old, result, subresource, manager)
        if result == old:  # a no-op update does not bump the resourceVersion, as etcd's guaranteed update
            return self.present(rt, old)
        if dry_run:
            return self.present(rt, result)
        if result["metadata"].get("deletionTimestamp") and not result["metadata"].get("finalizers"):
            if not (rt.key == ("", "pods") and self._pod_awaits_kubelet(result)):
                # Emptied finalizers delete the object: one DELETED event carrying the last stored state (etcd's
                # prevKV), while the request gets the updated object back.
                final = self._remove(rt, old)
                result["metadata"]["resourceVersion"] = final["metadata"]["resourceVersion"]
                return self.present(rt, result)
        stored = self._store(rt, result, old, "MODIFIED")
        self._after_update(rt, old, stored)
        return self.present(rt, stored)

    def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        body: Any,
        *,
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
        dry_run: bool = False,
        manager: str | None = None,
    ) -> tuple[Obj, bool]:
        """Returns (object, created). field_manager: the request's fieldManager (required for apply); manager: who
        to record in managedFields for the other patch types (fieldManager, else the User-Agent's prefix)."""
        if content_type == patches.APPLY_PATCH:
            return self.apply(
                rt, namespace, name, body, subresource=subresource, manager=field_manager, force=force, dry_run=dry_run
            )
        old = self.lookup(rt, namespace, name)
        if old is None:
            raise not_found(rt.plural, rt.group, name)
        current = self.present(rt, old)
        if content_type == patches.MERGE_PATCH:
            if not isinstance(body, dict):
                raise bad_request("merge patch must be a JSON object")
            new = patches.merge_patch(current, body)
        elif content_type == patches.JSON_PATCH:
            new = patches.json_patch(current, body)
        elif content_type == patches.STRATEGIC_PATCH:
            if rt.custom:
                raise StatusError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: "
                    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                )
            if not isinstance(body, dict):
                raise bad_request("strategic merge patch must be a JSON object")
            new = patches.strategic_merge_patch(current, body, self.type_schema(rt))
        else:
            raise StatusError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{patches.JSON_PATCH}, {patches.MERGE_PATCH}, {patches.APPLY_PATCH}"
                + ("" if rt.custom else f", {patches.STRATEGIC_PATCH}"),
            )
        if not isinstance(new, dict):
            raise bad_request("the patch result is not an object")
        new = deep(new)
        meta = new.setdefault("metadata", {})
        sent_rv = meta.get("resourceVersion")
        if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
            raise conflict(rt.plural, rt.group, name)
        if meta.get("name") != name:
            raise bad_request("metadata.name cannot be changed by a patch")
        if "uid" in meta and meta["uid"] != old["metadata"]["uid"]:
            raise conflict(
                rt.plural,
                rt.group,
                name,
                f"Precondition failed: UID in precondition: {meta['uid']}, "
                f"UID in object meta: {old['metadata']['uid']}",
            )
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        return self._commit_update(rt, old, new, subresource=subresource, dry_run=dry_run, manager=manager), False

    def apply(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None,
        manager: str | None,
        force: bool,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Server-side apply, simplified: the applied configuration is merged into the object; fields this manager
        applied before and omits now are removed (unless another manager owns them too); a field another manager
        (Apply or Update) owns with a different value is a 409 conflict unless force, which takes it over."""
        if not manager:
            raise bad_request("PATCH with application/apply-patch+yaml requires the fieldManager parameter")
        if not isinstance(body, dict):
            raise bad_request("apply configuration must be an object")
        if not body.get("kind") or not body.get("apiVersion"):
            raise bad_request("apply configuration must specify apiVersion and kind")
        body = deep(body)
        meta_in = body.setdefault("metadata", {})
        if meta_in.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({meta_in.get('name')}) does not match the name on the URL ({name})"
            )
        meta_in["name"] = name
        old = self.lookup(rt, namespace, name)
        schema = self.type_schema(rt)
        applied_paths = patches.field_paths(
            {k: v for k, v in body.items() if k != "status"}
            if subresource != "status"
            else {"status": body.get("status", {})},
            schema,
        )
        applied_paths = {
            p for p in applied_paths if p[:2] != ("f:metadata", "f:name") and p[:2] != ("f:metadata", "f:namespace")
        }
        entry = {
            "manager": manager,
            "operation": "Apply",
            "apiVersion": rt.api_version,
            "time": now(),
            "fieldsType": "FieldsV1",
            "fieldsV1": patches.fields_v1(applied_paths),
            **({"subresource": subresource} if subresource else {}),
        }
        if old is None:
            if subresource:
                raise not_found(rt.plural, rt.group, name)
            obj = {k: v for k, v in body.items()}
            obj["metadata"]["managedFields"] = [entry]
            return self.create(rt, namespace, obj, dry_run=dry_run), True
        current = deep(self.present(rt, old))
        managed = current["metadata"].get("managedFields") or []
        mine = next(
            (
                m
                for m in managed
                if m.get("manager") == manager and m.get("operation") == "Apply" and m.get("subresource") == subresource
            ),
            None,
        )
        others = [m for m in managed if m is not mine]
        conflicts = []
        for other in others:
            owned = patches.paths_from_fields_v1(other.get("fieldsV1") or {})
            for path in sorted(owned & applied_paths):
                if patches.value_at(current, path) != patches.value_at(body, path):
                    conflicts.append((other["manager"], path))
        if conflicts and not force:
            lines = "; ".join(f'conflict with "{m}": {_render_path(path)}' for m, path in conflicts)
            raise StatusError(
                409,
                "Conflict",
                f"Apply failed with {len(conflicts)} conflict{'s' if len(conflicts) > 1 else ''}: {lines}",
            )
        if conflicts and force:
            taken = {p for _m, p in conflicts}
            for other in others:
                owned = patches.paths_from_fields_v1(other.get("fieldsV1") or {}) - taken
                other["fieldsV1"] = patches.fields_v1(owned)
            others = [o for o in others if o.get("fieldsV1")]
        previously = patches.paths_from_fields_v1(mine.get("fieldsV1") or {}) if mine else set()
        still_owned = (
            set().union(*(patches.paths_from_fields_v1(o.get("fieldsV1") or {}) for o in others)) if others else set()
        )
        result = current
        for path in previously - applied_paths - still_owned:
            patches.remove_path(result, path)
        body["metadata"].pop("resourceVersion", None)
        result = patches.apply_merge(result, body, schema)
        result["metadata"]["managedFields"] = [*others, entry]
        result["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        return self._commit_update(rt, old, result, subresource=subresource, dry_run=dry_run), False

    def _owned_view(self, rt: ResourceType, obj: Obj | None, subresource: str | None) -> Obj:
        """The part of an object whose fields managers own: not the server-set metadata, and either only the status
        (status subresource) or everything but it (main resource of a type with the status subresource)."""
        if obj is None:
            return {}
        if subresource == "status":
            return {"status": obj["status"]} if "status" in obj else {}
        view = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        if rt.has_status:
            view.pop("status", None)
        meta = {
            k: v for k, v in obj["metadata"].items() if k in ("labels", "annotations", "finalizers", "ownerReferences")
        }
        if meta:
            view["metadata"] = meta
        return view

    def _track_update(self, rt: ResourceType, old: Obj | None, new: Obj, subresource: str | None, manager: str) -> None:
        """Record an Update operation in managedFields, as the real server does for every write: the manager owns
        the fields it changed, taken from whoever owned them (no conflict for updates)."""
        schema = self.type_schema(rt)
        before, after = self._owned_view(rt, old, subresource), self._owned_view(rt, new, subresource)
        changed, removed = patches.changed_paths(before, after, schema)
        if not changed and not removed:
            return
        touched = changed | removed
        entries = []
        mine = None
        for entry in new["metadata"].get("managedFields") or []:
            if (
                entry.get("manager") == manager
                and entry.get("operation") == "Update"
                and entry.get("subresource") == subresource
            ):
                mine = entry
                continue
            if old is not None:
                owned = patches.paths_from_fields_v1(entry.get("fieldsV1") or {})
                if owned & touched:
                    entry = {**entry, "fieldsV1": patches.fields_v1(owned - touched)}
            if entry.get("fieldsV1"):
                entries.append(entry)
        # The writer owns what it set; fields removed are owned by nobody.
        owned = ((patches.paths_from_fields_v1(mine.get("fieldsV1") or {}) if mine else set()) - removed) | changed
        if owned:
            entries.append(
                {
                    "manager": manager,
                    "operation": "Update",
                    "apiVersion": rt.api_version,
                    "time": now(),
                    "fieldsType": "FieldsV1",
                    "fieldsV1": patches.fields_v1(owned),
                    **({"subresource": subresource} if subresource else {}),
                }
            )
        new["metadata"]["managedFields"] = entries

    # ---- deleting ------------------------------------------------------------------------------------------

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        options: Obj | None = None,
        *,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Returns (object or Status, deleted-now)."""
        options = options or {}
        old = self.lookup(rt, namespace, name)
        if old is None:
            raise not_found(rt.plural, rt.group, name)
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
            raise conflict(
                rt.plural,
                rt.group,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {old['metadata']['uid']}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise conflict(
                rt.plural,
                rt.group,
                name,
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {old['metadata']['resourceVersion']}",
            )
        policy = options.get("propagationPolicy")
        if options.get("orphanDependents") is True and not policy:
            policy = "Orphan"
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise invalid(
                "DeleteOptions",
                "",
                "",
                [("FieldValueNotSupported", "propagationPolicy", f'Unsupported value: "{policy}"')],
            )
        if dry_run:
            return self.present(rt, old), False
        obj = deep(old)
        meta = obj["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        if policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        if rt.key == ("", "namespaces"):
            return self._delete_namespace(rt, old, obj), False
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions") and CRD_FINALIZER not in finalizers:
            finalizers.append(CRD_FINALIZER)
        grace = 0
        if rt.key == ("", "pods") and self.graceful_pod_deletion:
            grace = self._pod_grace(old, options.get("gracePeriodSeconds"))
        if finalizers or grace > 0:
            changed = False
            if finalizers != list(meta.get("finalizers") or []):
                meta["finalizers"] = finalizers
                changed = True
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = (datetime.now(UTC) + timedelta(seconds=grace)).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
                meta["deletionGracePeriodSeconds"] = grace
                if "generation" in meta:
                    meta["generation"] += 1
                changed = True
            elif grace < (meta.get("deletionGracePeriodSeconds") or 0):
                meta["deletionGracePeriodSeconds"] = grace
                changed = True
            if grace == 0 and rt.key == ("", "pods") and not finalizers:
                return self._remove(rt, old), True
            stored = self._store(rt, obj, old, "MODIFIED") if changed else old
            uid = meta["uid"]
            if "foregroundDeletion" in finalizers:
                self.schedule(lambda: self._gc_foreground(uid))
            if "orphan" in finalizers:
                self.schedule(lambda: self._gc_orphan(uid))
            if CRD_FINALIZER in finalizers:
                self.schedule(lambda: self._crd_cleanup(uid))
            return self.present(rt, stored), False
        return self._remove(rt, old), True

    def _pod_grace(self, pod: Obj, requested: Any) -> int:
        if requested is not None:
            grace = int(requested)
        else:
            grace = int((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        if not (pod.get("spec") or {}).get("nodeName") or (pod.get("status") or {}).get("phase") in (
            "Succeeded",
            "Failed",
        ):
            return 0  # never scheduled or already finished: no kubelet to wait for
        return max(grace, 0)

    def _pod_awaits_kubelet(self, pod: Obj) -> bool:
        meta = pod["metadata"]
        return bool(self.graceful_pod_deletion and meta.get("deletionGracePeriodSeconds"))

    def _delete_namespace(self, rt: ResourceType, old: Obj, obj: Obj) -> Obj:
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return self.present(rt, old)
        meta["deletionTimestamp"] = now()
        meta["deletionGracePeriodSeconds"] = 0
        obj.setdefault("status", {})["phase"] = "Terminating"
        stored = self._store(rt, obj, old, "MODIFIED")
        name = meta["name"]
        self.schedule(lambda: self._namespace_cleanup(name))
        return self.present(rt, stored)

    # ---- admission (built-in defaulting and validation) ------------------------------------------------------

    def _admit_create(self, rt: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        self._validate_meta(rt, obj)
        if rt.key == ("", "namespaces"):
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        elif rt.key == ("", "pods"):
            self._admit_pod(obj)
        elif rt.key in WORKLOADS:
            self._validate_workload(rt, obj)
            obj.pop("status", None)
        elif rt.key == ("", "services"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            if spec.get("clusterIP") != "None":
                spec["clusterIP"] = f"10.96.{random.randint(0, 255)}.{random.randint(1, 254)}"
                spec["clusterIPs"] = [spec["clusterIP"]]
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
            obj["status"] = {"loadBalancer": {}}
        elif rt.key == ("", "persistentvolumeclaims"):
            obj["status"] = {"phase": "Pending"}
            obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
        elif rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._admit_crd(obj)
            obj.pop("status", None)
            meta["finalizers"] = [*dict.fromkeys([*(meta.get("finalizers") or []), CRD_FINALIZER])]
        elif rt.has_status and rt.key != ("", "nodes"):  # the kubelet registers its node with a status
            obj.pop("status", None)  # status is reset on create where it is a subresource, CRs included
            obj.pop("status", None)  # the real server drops status on create when the subresource is enabled

    def _validate_workload(self, rt: ResourceType, obj: Obj) -> None:
        """Deployments, DaemonSets, ReplicaSets, StatefulSets: a selector that the pod template's labels match."""
        spec = obj.get("spec") or {}
        selector = spec.get("selector")
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        name = obj["metadata"]["name"]
        if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
            raise invalid(rt.kind, rt.group, name, [("FieldValueRequired", "spec.selector", "Required value")])
        if not label_selector_matches(selector, labels):
            raise invalid(
                rt.kind,
                rt.group,
                name,
                [
                    (
                        "FieldValueInvalid",
                        "spec.template.metadata.labels",
                        f"Invalid value: {json.dumps(labels)}: `selector` does not match template `labels`",
                    )
                ],
            )
        if not (spec.get("template") or {}).get("spec", {}).get("containers"):
            raise invalid(
                rt.kind, rt.group, name, [("FieldValueRequired", "spec.template.spec.containers", "Required value")]
            )

    def _validate_meta(self, rt: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        name = meta["name"]
        causes = []
        pattern, limit = (_DNS_LABEL, 63) if rt.key == ("", "namespaces") else (_DNS_SUBDOMAIN, 253)
        if rt.key == ("", "services"):
            pattern, limit = _DNS_1035, 63
        if rt.key in (
            ("rbac.authorization.k8s.io", "roles"),
            ("rbac.authorization.k8s.io", "clusterroles"),
            ("rbac.authorization.k8s.io", "rolebindings"),
            ("rbac.authorization.k8s.io", "clusterrolebindings"),
        ):
            if "/" in name or name in (".", ".."):
                causes.append(("FieldValueInvalid", "metadata.name", f"Invalid value: \"{name}\": may not contain '/'"))
        elif not pattern.fullmatch(name) or len(name) > limit:
            causes.append(
                (
                    "FieldValueInvalid",
                    "metadata.name",
                    f'Invalid value: "{name}": a lowercase RFC 1123 {"label" if limit == 63 else "subdomain"} '
                    + _RFC1123,
                )
            )
        for key, value in (meta.get("labels") or {}).items():
            if not _valid_qualified_name(key):
                causes.append(
                    (
                        "FieldValueInvalid",
                        "metadata.labels",
                        f'Invalid value: "{key}": name part ' + _LABEL_RULE,
                    )
                )
            if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
                causes.append(
                    (
                        "FieldValueInvalid",
                        "metadata.labels",
                        f'Invalid value: "{value}": a valid label must be an empty string or ' + _LABEL_RULE[5:],
                    )
                )
        for key, value in (meta.get("annotations") or {}).items():
            if not _valid_qualified_name(key):
                causes.append(
                    (
                        "FieldValueInvalid",
                        "metadata.annotations",
                        f'Invalid value: "{key}": name part must consist of alphanumeric characters',
                    )
                )
            if not isinstance(value, str):
                raise bad_request(f"annotation {key} must be a string")
        if len(json.dumps(meta.get("annotations") or {})) > 256 * 1024:
            causes.append(("FieldValueTooLong", "metadata.annotations", "Too long: must have at most 262144 bytes"))
        refs = meta.get("ownerReferences") or []
        for ref in refs:
            for required in ("apiVersion", "kind", "name", "uid"):
                if not ref.get(required):
                    causes.append(("FieldValueRequired", f"metadata.ownerReferences.{required}", "Required value"))
        controllers = [r for r in refs if r.get("controller")]
        if len(controllers) > 1:
            causes.append(
                (
                    "FieldValueInvalid",
                    "metadata.ownerReferences",
                    "Invalid value: only one reference can have Controller set to true",
                )
            )
        if len({r.get("uid") for r in refs}) != len(refs):
            causes.append(("FieldValueDuplicate", "metadata.ownerReferences", "Duplicate value: owner uid"))
        if causes:
            raise invalid(rt.kind, rt.group, name, causes)

    def _admit_pod(self, pod: Obj) -> None:
        meta = pod["metadata"]
        spec = pod.setdefault("spec", {})
        if not spec.get("containers"):
            raise invalid("Pod", "", meta["name"], [("FieldValueRequired", "spec.containers", "Required value")])
        sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        sa = self.lookup(self.registry.get("", "v1", "serviceaccounts"), meta["namespace"], sa_name)
        if sa is None:
            raise forbidden(
                "pods",
                "",
                meta["name"],
                f'error looking up service account {meta["namespace"]}/{sa_name}: serviceaccount "{sa_name}" not found',
            )
        spec["serviceAccountName"] = spec["serviceAccount"] = sa_name
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")  # the Priority admission plugin
        spec.setdefault("priority", 0)
        _default_pod_spec(meta["name"], spec)
        pod["status"] = {"phase": "Pending", "qosClass": _qos_class(spec)}

    def _admit_crd(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        name = crd["metadata"]["name"]
        causes = []
        for required in ("group", "scope"):
            if not spec.get(required):
                causes.append(("FieldValueRequired", f"spec.{required}", "Required value"))
        for required in ("plural", "kind"):
            if not names.get(required):
                causes.append(("FieldValueRequired", f"spec.names.{required}", "Required value"))
        if not spec.get("versions"):
            causes.append(("FieldValueRequired", "spec.versions", "Required value"))
        if spec.get("scope") not in (None, "Namespaced", "Cluster"):
            causes.append(("FieldValueNotSupported", "spec.scope", f'Unsupported value: "{spec.get("scope")}"'))
        if names.get("plural") and spec.get("group") and name != f"{names['plural']}.{spec['group']}":
            causes.append(
                (
                    "FieldValueInvalid",
                    "metadata.name",
                    f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
                )
            )
        storage = [v for v in spec.get("versions") or [] if v.get("storage")]
        if spec.get("versions") and len(storage) != 1:
            causes.append(
                (
                    "FieldValueInvalid",
                    "spec.versions",
                    "Invalid value: must have exactly one version marked as storage version",
                )
            )
        for i, v in enumerate(spec.get("versions") or []):
            schema = (v.get("schema") or {}).get("openAPIV3Schema")
            if schema is None:
                causes.append(
                    (
                        "FieldValueRequired",
                        f"spec.versions[{i}].schema.openAPIV3Schema",
                        "Required value: schemas are required",
                    )
                )
            else:
                causes += structural_errors(schema, f"spec.versions[{i}].schema.openAPIV3Schema")
        if causes:
            raise invalid("CustomResourceDefinition", "apiextensions.k8s.io", name, causes)
        clash = self.registry.any_version(spec["group"], names["plural"])
        if clash is not None and not clash.custom:
            raise invalid(
                "CustomResourceDefinition",
                "apiextensions.k8s.io",
                name,
                [("FieldValueInvalid", "spec.names.plural", "Invalid value: conflicts with a built-in resource")],
            )

    def _after_create(self, rt: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        if rt.key == ("", "namespaces"):
            ns = meta["name"]
            sa_rt = self.registry.get("", "v1", "serviceaccounts")
            if self.lookup(sa_rt, ns, "default") is None:
                self.create(sa_rt, ns, {"metadata": {"name": "default"}})
            cm_rt = self.registry.get("", "v1", "configmaps")
            if self.lookup(cm_rt, ns, "kube-root-ca.crt") is None:
                self.create(cm_rt, ns, {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "fake"}})
        elif rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._register_crd(obj)
            name = meta["name"]
            self.schedule(lambda: self._establish_crd(name))
        if meta.get("ownerReferences"):
            key, ident = rt.key, (meta.get("namespace", ""), meta["name"])
            self.schedule(lambda: self._gc_check(key, ident))

    def _admit_update(self, rt: ResourceType, old: Obj, new: Obj, subresource: str | None) -> None:
        if subresource is None:
            self._validate_meta(rt, new)
        if rt.key == ("", "pods") and subresource is None:
            spec = new.setdefault("spec", {})
            for key in ("priority", "preemptionPolicy"):  # the Priority admission plugin keeps them on update
                if key not in spec and key in (old.get("spec") or {}):
                    spec[key] = old["spec"][key]
            # serviceAccount mirrors serviceAccountName (defaulting one way, conversion the other); the admission
            # plugin that defaults it to "default" runs on create only, as on the real server.
            if spec.get("serviceAccountName") or spec.get("serviceAccount"):
                spec["serviceAccountName"] = spec["serviceAccount"] = (
                    spec.get("serviceAccountName") or spec["serviceAccount"]
                )
            _default_pod_spec(new["metadata"]["name"], spec)
            _check_pod_update(old, new)
        if rt.key in WORKLOADS and subresource is None:
            self._validate_workload(rt, new)
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions") and subresource is None:
            self._admit_crd(new)
            if (new.get("spec") or {}).get("group") != (old.get("spec") or {}).get("group") or (
                new.get("spec") or {}
            ).get("names", {}).get("plural") != (old.get("spec") or {}).get("names", {}).get("plural"):
                raise invalid(
                    "CustomResourceDefinition",
                    "apiextensions.k8s.io",
                    new["metadata"]["name"],
                    [("FieldValueInvalid", "spec.group", "Invalid value: field is immutable")],
                )
        if rt.key == ("", "namespaces") and subresource is None:
            new.setdefault("metadata", {}).setdefault("labels", {})["kubernetes.io/metadata.name"] = new["metadata"][
                "name"
            ]
        if rt.key in WORKLOADS and subresource is None:
            if (new.get("spec") or {}).get("selector") != (old.get("spec") or {}).get("selector"):
                raise invalid(
                    rt.kind,
                    rt.group,
                    new["metadata"]["name"],
                    [("FieldValueInvalid", "spec.selector", "Invalid value: field is immutable")],
                )
        if rt.key in BINDINGS and new.get("roleRef") != old.get("roleRef"):
            raise invalid(
                rt.kind,
                rt.group,
                new["metadata"]["name"],
                [("FieldValueInvalid", "roleRef", "Invalid value: cannot change roleRef")],
            )

    def _after_update(self, rt: ResourceType, old: Obj, new: Obj) -> None:
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            if new.get("spec") != old.get("spec"):
                self._register_crd(new)
        old_refs = {r.get("uid") for r in old["metadata"].get("ownerReferences") or []}
        new_refs = {r.get("uid") for r in new["metadata"].get("ownerReferences") or []}
        if new_refs - old_refs:
            key, ident = rt.key, (new["metadata"].get("namespace", ""), new["metadata"]["name"])
            self.schedule(lambda: self._gc_check(key, ident))

    # ---- CRDs ----------------------------------------------------------------------------------------------

    def _register_crd(self, crd: Obj) -> None:
        spec = crd["spec"]
        self.registry.remove_custom(spec["group"], spec["names"]["plural"])
        for rt in resource_from_crd(crd):
            self.registry.add(rt)
            self.schemas[(rt.group, rt.version, rt.plural)] = CrdSchema(rt.schema)

    def _establish_crd(self, name: str) -> None:
        rt = self.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        crd = self.lookup(rt, None, name)
        if crd is None:
            return
        status = deep(crd.get("status") or {})
        spec = crd["spec"]
        status["acceptedNames"] = {k: v for k, v in spec["names"].items()}
        status["acceptedNames"].setdefault("singular", spec["names"]["kind"].lower())
        status["acceptedNames"].setdefault("listKind", spec["names"]["kind"] + "List")
        status["storedVersions"] = sorted(
            {*status.get("storedVersions", []), *(v["name"] for v in spec["versions"] if v.get("storage"))}
        )
        stamp = now()
        status["conditions"] = [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": stamp,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": stamp,
            },
        ]
        if status != crd.get("status"):
            self._commit_update(rt, crd, {**deep(crd), "status": status}, subresource="status")

    def _crd_of(self, rt: ResourceType) -> Obj | None:
        crd_rt = self.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        return self.lookup(crd_rt, None, f"{rt.plural}.{rt.group}")

    def _crd_cleanup(self, crd_uid: str) -> None:
        loc = self.uids.get(crd_uid)
        if loc is None:
            return
        crd_rt = self.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        crd = self.bucket(crd_rt).get(loc[1])
        if crd is None or not crd["metadata"].get("deletionTimestamp"):
            return
        rt = self.registry.any_version(crd["spec"]["group"], crd["spec"]["names"]["plural"])
        remaining = list(self.bucket(rt).values()) if rt else []
        for obj in remaining:
            if not obj["metadata"].get("deletionTimestamp"):
                self._try(lambda o=obj: self.delete(rt, o["metadata"].get("namespace"), o["metadata"]["name"]))
        if rt is None or not self.bucket(rt):
            self._drop_finalizer(crd_rt, crd, CRD_FINALIZER)
            if self.lookup(crd_rt, None, crd["metadata"]["name"]) is None and rt is not None:
                self.registry.remove_custom(rt.group, rt.plural)
                self.buckets.pop(rt.key, None)

    # ---- validation ------------------------------------------------------------------------------------------

    def type_schema(self, rt: ResourceType) -> typeschema.Schema | None:
        """The schema that drives decoding and patching: the built-in type's, or the CRD version's."""
        if rt.custom:
            return rt.schema
        key = (rt.group, rt.version, rt.kind)
        if key not in self._type_schemas:
            self._type_schemas[key] = typeschema.for_kind(*key)
        return self._type_schemas[key]

    def _normalize(self, rt: ResourceType, obj: Obj, subresource: str | None = None) -> None:
        """Decode as the real server: unknown fields dropped with a warning (400 under fieldValidation=Strict),
        values of the wrong type rejected (built-ins: 400), CR nulls pruned and defaults applied."""
        unknown: list[str] = []
        if rt.custom:
            schema = self.schemas.get((rt.group, rt.version, rt.plural))
            if schema is not None:
                schema.normalize(obj, unknown, status_only=subresource == "status")
        elif subresource == "status":  # the rest comes from the stored object, already decoded
            if obj.get("status") is not None:
                status_schema = typeschema.field(self.type_schema(rt), "status")
                obj["status"] = typeschema.normalize(obj["status"], status_schema, "status", unknown, rt.kind)
        else:
            typeschema.normalize(obj, self.type_schema(rt), "", unknown, rt.kind)
        if unknown:
            if self.field_validation == "Strict":
                fields = ", ".join(f'unknown field "{u}"' for u in unknown)
                raise bad_request(f"strict decoding error: {fields}")
            if self.field_validation != "Ignore":
                self.warnings.extend(f'unknown field "{u}"' for u in unknown)

    def _validate(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        if not rt.custom:
            return
        schema = self.schemas.get((rt.group, rt.version, rt.plural))
        if schema is None:
            return
        status_only = old is not None and _without_status(obj) == _without_status(old)
        errors = schema.errors(obj, status_only=status_only)
        if errors:
            raise invalid(rt.kind, rt.group, obj["metadata"].get("name", ""), errors)

    # ---- garbage collection, namespace and finalizer controllers --------------------------------------------

    def _try(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except StatusError:
            pass  # raced with another deletion or update: the next pass converges

    def _rt_for_key(self, key: Key) -> ResourceType | None:
        return self.registry.any_version(*key)

    def _obj_at(self, key: Key, ident: Ident) -> Obj | None:
        return self.buckets.get(key, {}).get(ident)

    def _drop_finalizer(self, rt: ResourceType, obj: Obj, finalizer: str) -> None:
        current = self.lookup(rt, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        if current is None or finalizer not in (current["metadata"].get("finalizers") or []):
            return
        new = deep(current)
        new["metadata"]["finalizers"] = [f for f in new["metadata"]["finalizers"] if f != finalizer]
        if not new["metadata"]["finalizers"]:
            del new["metadata"]["finalizers"]
        self._try(lambda: self._commit_update(rt, current, new, subresource=None))

    def _owners_alive(self, obj: Obj) -> list[dict[str, Any]]:
        """The owner references that resolve as the real GC resolves them: an object of that kind and name, in
        the dependent's namespace (or cluster-scoped), with that uid. A namespaced owner in another namespace,
        or a namespaced owner of a cluster-scoped dependent, counts as absent."""
        namespace = obj["metadata"].get("namespace", "")
        alive = []
        for ref in obj["metadata"].get("ownerReferences") or []:
            loc = self.uids.get(ref.get("uid", ""))
            if loc is None:
                continue
            (group, plural), (owner_ns, owner_name) = loc
            rt = self._rt_for_key((group, plural))
            if rt is None or rt.kind != ref.get("kind") or owner_name != ref.get("name"):
                continue
            if owner_ns and owner_ns != namespace:
                continue
            alive.append(ref)
        return alive

    def _gc_check(self, key: Key, ident: Ident) -> None:
        """A dependent whose owners are all gone is deleted (owner references to objects that never existed too)."""
        obj = self._obj_at(key, ident)
        rt = self._rt_for_key(key)
        if obj is None or rt is None or obj["metadata"].get("deletionTimestamp"):
            return
        refs = obj["metadata"].get("ownerReferences") or []
        if not refs:
            return
        alive = self._owners_alive(obj)
        if not alive:
            self._try(lambda: self.delete(rt, ident[0] or None, ident[1], {"propagationPolicy": "Background"}))
        elif len(alive) != len(refs):
            new = deep(obj)
            new["metadata"]["ownerReferences"] = alive
            self._try(lambda: self._commit_update(rt, obj, new, subresource=None))

    def _gc_after_removal(self, uid: str, owner_refs: list[dict[str, Any]], rt: ResourceType, ident: Ident) -> None:
        for key, dep in list(self.dependents.get(uid, ())):
            self._gc_check(key, dep)
        for ref in owner_refs:  # an owner waiting in foreground deletion may now be free
            self._gc_foreground(ref.get("uid", ""))
        if rt.namespaced and ident[0]:
            ns = self.lookup(self.registry.get("", "v1", "namespaces"), None, ident[0])
            if ns is not None and ns["metadata"].get("deletionTimestamp"):
                self._namespace_cleanup(ident[0])
        if rt.custom:
            crd = self._crd_of(rt)
            if crd is not None and crd["metadata"].get("deletionTimestamp"):
                self._crd_cleanup(crd["metadata"]["uid"])

    def _gc_foreground(self, owner_uid: str) -> None:
        loc = self.uids.get(owner_uid)
        if loc is None:
            return
        owner = self._obj_at(*loc)
        rt = self._rt_for_key(loc[0])
        if owner is None or rt is None or "foregroundDeletion" not in (owner["metadata"].get("finalizers") or []):
            return
        blocking = 0
        for key, ident in list(self.dependents.get(owner_uid, ())):
            dep = self._obj_at(key, ident)
            dep_rt = self._rt_for_key(key)
            if dep is None or dep_rt is None:
                continue
            ref = next((r for r in dep["metadata"].get("ownerReferences") or [] if r.get("uid") == owner_uid), {})
            if ref.get("blockOwnerDeletion"):
                blocking += 1
            if not dep["metadata"].get("deletionTimestamp"):
                policy = "Foreground" if ref.get("blockOwnerDeletion") else "Background"
                self._try(
                    lambda k=key, i=ident, p=policy, d=dep_rt: self.delete(
                        d, i[0] or None, i[1], {"propagationPolicy": p}
                    )
                )
        blocking = sum(
            1
            for key, ident in self.dependents.get(owner_uid, ())
            if (dep := self._obj_at(key, ident)) is not None
            and any(
                r.get("uid") == owner_uid and r.get("blockOwnerDeletion")
                for r in dep["metadata"].get("ownerReferences") or []
            )
        )
        if blocking == 0:
            self._drop_finalizer(rt, owner, "foregroundDeletion")

    def _gc_orphan(self, owner_uid: str) -> None:
        loc = self.uids.get(owner_uid)
        if loc is None:
            return
        owner = self._obj_at(*loc)
        rt = self._rt_for_key(loc[0])
        if owner is None or rt is None:
            return
        for key, ident in list(self.dependents.get(owner_uid, ())):
            dep = self._obj_at(key, ident)
            dep_rt = self._rt_for_key(key)
            if dep is None or dep_rt is None:
                continue
            new = deep(dep)
            new["metadata"]["ownerReferences"] = [
                r for r in new["metadata"]["ownerReferences"] if r.get("uid") != owner_uid
            ]
            if not new["metadata"]["ownerReferences"]:
                del new["metadata"]["ownerReferences"]
            self._try(lambda d=dep_rt, o=dep, n=new: self._commit_update(d, o, n, subresource=None))
        self._drop_finalizer(rt, owner, "orphan")

    def _namespace_cleanup(self, name: str) -> None:
        ns_rt = self.registry.get("", "v1", "namespaces")
        ns = self.lookup(ns_rt, None, name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        remaining = 0
        for key, bucket in list(self.buckets.items()):
            rt = self._rt_for_key(key)
            if rt is None or not rt.namespaced:
                continue
            for ident, obj in list(bucket.items()):
                if ident[0] != name:
                    continue
                remaining += 1
                if not obj["metadata"].get("deletionTimestamp"):
                    self._try(
                        lambda r=rt, i=ident: self.delete(
                            r, i[0], i[1], {"propagationPolicy": "Background", "gracePeriodSeconds": 0}
                        )
                    )
                elif rt.key == ("", "pods") and not obj["metadata"].get("finalizers"):
                    self._try(lambda r=rt, i=ident: self.delete(r, i[0], i[1], {"gracePeriodSeconds": 0}))
        still = any(
            ident[0] == name
            for key, bucket in self.buckets.items()
            if (r := self._rt_for_key(key)) and r.namespaced
            for ident in bucket
        )
        if not still and self.lookup(ns_rt, None, name) is not None:
            current = self.lookup(ns_rt, None, name)
            self._remove(ns_rt, current)


def route_event(watcher: Watcher, event: Event) -> None:
    """Deliver one event to a watcher, turning MODIFIED into ADDED/DELETED when the object enters or leaves its
    selection, as the watch cache does."""
    if event.type == "MODIFIED":
        now_in = watcher.match(event.obj)
        was_in = event.old is not None and watcher.match(event.old)
        if now_in and was_in:
            watcher.queue.put_nowait(("MODIFIED", event))
        elif now_in:
            watcher.queue.put_nowait(("ADDED", event))
        elif was_in:
            watcher.queue.put_nowait(("DELETED", event))
    elif watcher.match(event.obj):
        watcher.queue.put_nowait((event.type, event))


def _without_status(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _spec_part(rt: ResourceType, obj: Obj) -> Obj:
    """What a generation counts: everything but metadata (and status where status is a subresource)."""
    skip = {"metadata", "status"} if rt.has_status else {"metadata"}
    return {k: v for k, v in obj.items() if k not in skip}


def _valid_qualified_name(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_LABEL_NAME.fullmatch(name))


def _render_path(path: tuple[str, ...]) -> str:
    out = ""
    for part in path:
        if part.startswith("f:"):
            out += "." + part[2:]
        elif part.startswith("k:"):
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(part[2:]).items()) + "]"
        elif part.startswith("v:"):
            out += f"[={part[2:]}]"
    return out


def label_selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels, matchExpressions with In, NotIn, Exists, DoesNotExist)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _default_pod_spec(pod_name: str, spec: Obj) -> None:
    """The pod defaulting functions (run on create and on every update, before validation), with the container
    checks."""
    if not spec.get("containers"):
        raise invalid("Pod", "", pod_name, [("FieldValueRequired", "spec.containers", "Required value")])
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    names = set()
    for c in [*(spec.get("initContainers") or []), *spec["containers"]]:
        if not c.get("name") or not c.get("image"):
            raise invalid(
                "Pod",
                "",
                pod_name,
                [
                    (
                        "FieldValueRequired",
                        "spec.containers.name" if not c.get("name") else "spec.containers.image",
                        "Required value",
                    )
                ],
            )
        if c["name"] in names:
            raise invalid(
                "Pod",
                "",
                pod_name,
                [("FieldValueDuplicate", "spec.containers.name", f'Duplicate value: "{c["name"]}"')],
            )
        names.add(c["name"])
        image = c["image"]
        c.setdefault(
            "imagePullPolicy",
            "Always" if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1] else "IfNotPresent",
        )
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        res = c.setdefault("resources", {})
        if res.get("limits") and not res.get("requests"):
            res["requests"] = dict(res["limits"])
        elif res.get("limits"):
            for k, v in res["limits"].items():
                res["requests"].setdefault(k, v)
        _check_resources(pod_name, c["name"], res)


def _is_extended(resource: str) -> bool:
    """Extended resources (device plugins such as devices.kubevirt.io/kvm) cannot be overcommitted."""
    return "/" in resource and not resource.split("/", 1)[0].endswith("kubernetes.io")


def _check_resources(pod: str, container: str, res: Obj) -> None:
    requests, limits = res.get("requests") or {}, res.get("limits") or {}
    causes = []
    field = f"spec.containers[{container}].resources"
    for name, request in requests.items():
        if _is_extended(name):
            if name not in limits:
                causes.append(
                    (
                        "FieldValueForbidden",
                        f"{field}.requests[{name}]",
                        "Forbidden: Limit must be set for non overcommitable resources",
                    )
                )
            elif parse_quantity(request) != parse_quantity(limits[name]):
                causes.append(
                    (
                        "FieldValueInvalid",
                        f"{field}.requests[{name}]",
                        f'Invalid value: "{request}": must be equal to {name} limit of {limits[name]}',
                    )
                )
        elif name in limits and parse_quantity(request) > parse_quantity(limits[name]):
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{field}.requests",
                    f'Invalid value: "{request}": must be less than or equal to {name} limit of {limits[name]}',
                )
            )
    if causes:
        raise invalid("Pod", "", pod, causes)


def _qos_class(spec: Obj) -> str:
    containers = spec.get("containers") or []
    requests = [((c.get("resources") or {}).get("requests") or {}) for c in containers]
    limits = [((c.get("resources") or {}).get("limits") or {}) for c in containers]
    if not any(requests) and not any(limits):
        return "BestEffort"
    guaranteed = all(
        lim.get("cpu")
        and lim.get("memory")
        and req.get("cpu", lim["cpu"]) == lim["cpu"]
        and req.get("memory", lim["memory"]) == lim["memory"]
        for req, lim in zip(requests, limits, strict=True)
    )
    return "Guaranteed" if guaranteed else "Burstable"


_MUTABLE_POD_SPEC = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "schedulingGates")


def _check_pod_update(old: Obj, new: Obj) -> None:
    """A pod's spec is immutable but for container images, activeDeadlineSeconds, added tolerations and scheduling
    gates; simplification: spec.nodeName may also go from unset to set (a real cluster binds through pods/binding)."""
    a = deep(old.get("spec") or {})
    b = deep(new.get("spec") or {})
    for spec in (a, b):
        for key in _MUTABLE_POD_SPEC:
            spec.pop(key, None)
        for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
            c.pop("image", None)
    if not a.get("nodeName"):
        a.pop("nodeName", None)
        b.pop("nodeName", None)
    if a != b:
        raise invalid(
            "Pod",
            "",
            new["metadata"]["name"],
            [
                (
                    "FieldValueForbidden",
                    "spec",
                    _POD_UPDATE,
                )
            ],
        )


def bind_pod(store: Store, rt: ResourceType, namespace: str, name: str, binding: Obj) -> Obj:
    """POST pods/<name>/binding: what the scheduler does."""
    pod = store.lookup(rt, namespace, name)
    if pod is None:
        raise not_found("pods", "", name)
    target = (binding.get("target") or {}).get("name")
    if not target:
        raise invalid("Binding", "", name, [("FieldValueRequired", "target.name", "Required value")])
    if (pod.get("spec") or {}).get("nodeName"):
        raise conflict("pods/binding", "", name, f'pod {name} is already assigned to node "{pod["spec"]["nodeName"]}"')
    if pod["metadata"].get("deletionTimestamp"):
        raise conflict("pods/binding", "", name, f"pod {name} is being deleted, cannot be assigned to a host")
    new = deep(pod)
    new["spec"]["nodeName"] = target
    conditions = [c for c in (new.setdefault("status", {}).get("conditions") or []) if c.get("type") != "PodScheduled"]
    conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now()})
    new["status"]["conditions"] = conditions
    stored = store._store(rt, new, pod, "MODIFIED")
    del stored  # the response is a Status, as the real binding endpoint's
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
