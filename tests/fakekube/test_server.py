"""The fake API server, exercised through the real clients (kubernetes, kopf) over HTTP."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from kubernetes import client, config, dynamic, watch
from kubernetes.client.rest import ApiException

from tests.fakekube import TOKEN, FakeApiServer
from tests.fakekube.errors import StatusError
from tests.fakekube.process import FakeApiProcess

GROUP, VERSION, PLURAL = "example.com", "v1", "widgets"

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].status"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["color"],
                                "properties": {
                                    "color": {"type": "string", "enum": ["red", "blue"]},
                                    "size": {"type": "integer", "default": 3, "minimum": 1},
                                    "memory": {"x-kubernetes-int-or-string": True},
                                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                },
                            },
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str, color: str = "red", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"color": color, **spec},
    }


def pod(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}], **spec},
    }


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FakeApiServer]:
    crd_file = tmp_path / "widgets.yaml"
    crd_file.write_text(yaml.safe_dump(WIDGET_CRD))
    with FakeApiServer(crds=[crd_file], bookmark_interval=0.2) as server:
        yield server


@pytest.fixture
def k8s(api: FakeApiServer, tmp_path: Path) -> client.ApiClient:
    return config.new_client_from_config(str(api.kubeconfig(tmp_path / "kubeconfig")))


@pytest.fixture
def core(k8s: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(k8s)


@pytest.fixture
def custom(k8s: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(k8s)


def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.02)


def names(items: list[Any]) -> list[str]:
    return sorted(i.metadata.name if hasattr(i, "metadata") else i["metadata"]["name"] for i in items)


# ---- discovery -----------------------------------------------------------------------------------------------


def test_discovery_through_the_dynamic_client(k8s: client.ApiClient) -> None:
    dyn = dynamic.DynamicClient(k8s)
    widgets = dyn.resources.get(api_version=f"{GROUP}/{VERSION}", kind="Widget")
    assert widgets.namespaced and widgets.short_names == ["wd"]
    assert "status" in widgets.subresources
    pods = dyn.resources.get(api_version="v1", kind="Pod")
    assert {"status", "binding"} <= set(pods.subresources)
    assert not dyn.resources.get(api_version="v1", kind="Node").namespaced
    assert dyn.resources.get(api_version="apps/v1", kind="DaemonSet").name == "daemonsets"
    assert dyn.resources.get(api_version="coordination.k8s.io/v1", kind="Lease").namespaced
    assert dyn.version["kubernetes"]["major"] == "1"


# ---- create / get / list -------------------------------------------------------------------------------------


def test_create_get_and_server_set_metadata(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_pod("default", pod("a"))
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert int(created.metadata.resource_version) > 0
    assert created.status.phase == "Pending" and created.spec.service_account_name == "default"
    got = core.read_namespaced_pod("a", "default")
    assert got.metadata.uid == created.metadata.uid
    generated = core.create_namespaced_pod("default", {**pod(""), "metadata": {"generateName": "web-"}})
    assert generated.metadata.name.startswith("web-") and len(generated.metadata.name) == len("web-") + 5
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod("default", pod("a"))
    assert exc.value.status == 409 and '"reason":"AlreadyExists"' in exc.value.body
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod("missing", "default")
    assert exc.value.status == 404
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod("nowhere", pod("b"))
    assert exc.value.status == 404 and 'namespaces \\"nowhere\\" not found' in exc.value.body
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod("default", pod("b", serviceAccountName="ghost"))
    assert exc.value.status == 403
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod("default", pod("Bad_Name"))
    assert exc.value.status == 422
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("default", {"metadata": {"name": "c", "labels": {"vm": "has space"}}})
    assert exc.value.status == 422


def test_label_and_field_selectors(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod("web-1", {"app": "web", "tier": "front"}, nodeName="node-1"))
    core.create_namespaced_pod("default", pod("web-2", {"app": "web"}))
    core.create_namespaced_pod("default", pod("db-1", {"app": "db", "tier": "back"}, nodeName="node-2"))

    def select(**kw: str) -> list[str]:
        return names(core.list_namespaced_pod("default", **kw).items)

    assert select(label_selector="app=web") == ["web-1", "web-2"]
    assert select(label_selector="app==db") == ["db-1"]
    assert select(label_selector="app!=web") == ["db-1"]
    assert select(label_selector="tier in (front, back)") == ["db-1", "web-1"]
    assert select(label_selector="tier notin (front)") == ["db-1", "web-2"]
    assert select(label_selector="tier") == ["db-1", "web-1"]
    assert select(label_selector="!tier") == ["web-2"]
    assert select(label_selector="app=web,tier") == ["web-1"]
    assert select(field_selector="metadata.name=db-1") == ["db-1"]
    assert select(field_selector="spec.nodeName=node-1") == ["web-1"]
    assert select(field_selector="spec.nodeName=") == ["web-2"]
    assert select(field_selector="status.phase=Pending,spec.nodeName!=node-1") == ["db-1", "web-2"]
    assert names(core.list_pod_for_all_namespaces(field_selector="metadata.namespace=default").items) == [
        "db-1",
        "web-1",
        "web-2",
    ]
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod("default", field_selector="spec.containers=main")
    assert exc.value.status == 400 and "field label not supported" in exc.value.body
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod("default", label_selector="app in web")
    assert exc.value.status == 400


def test_list_pagination_and_typed_items(core: client.CoreV1Api) -> None:
    for i in range(5):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"cm-{i}"}})
    first = core.list_namespaced_config_map("default", limit=2)
    assert len(first.items) == 2 and first.metadata._continue
    rest = core.list_namespaced_config_map("default", limit=10, _continue=first.metadata._continue)
    assert names(first.items) + names(rest.items) == sorted(["kube-root-ca.crt"] + [f"cm-{i}" for i in range(5)])
    raw = json.loads(core.list_namespaced_config_map("default", _preload_content=False).read())
    assert raw["kind"] == "ConfigMapList" and "kind" not in raw["items"][0]  # typed list: items carry no kind


# ---- watch ---------------------------------------------------------------------------------------------------


def test_watch_from_resource_version_sees_exactly_later_events(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "before"}})
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "after"}, "data": {"k": "1"}})
    core.patch_namespaced_config_map("after", "default", {"data": {"k": "2"}})
    core.delete_namespaced_config_map("after", "default")
    seen = [
        (e["type"], e["object"].metadata.name, (e["object"].data or {}).get("k"))
        for e in watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=1
        )
    ]
    assert seen == [("ADDED", "after", "1"), ("MODIFIED", "after", "2"), ("DELETED", "after", "2")]


def test_watch_without_resource_version_starts_with_current_state_then_streams(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "one"}})
    w = watch.Watch()
    seen: list[tuple[str, str]] = []

    def later() -> None:
        time.sleep(0.3)
        core.create_namespaced_config_map("default", {"metadata": {"name": "two"}})

    threading.Thread(target=later).start()
    for event in w.stream(core.list_namespaced_config_map, "default", timeout_seconds=2):
        seen.append((event["type"], event["object"].metadata.name))
        if event["object"].metadata.name == "two":
            w.stop()
    assert ("ADDED", "one") in seen and seen[-1] == ("ADDED", "two")


def test_watch_with_selector_turns_updates_into_added_and_deleted(core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "x", "labels": {"pick": "no"}}})
    core.patch_namespaced_config_map("x", "default", {"metadata": {"labels": {"pick": "yes"}}})
    core.patch_namespaced_config_map("x", "default", {"data": {"a": "b"}})
    core.patch_namespaced_config_map("x", "default", {"metadata": {"labels": {"pick": "no"}}})
    seen = [
        e["type"]
        for e in watch.Watch().stream(
            core.list_namespaced_config_map,
            "default",
            label_selector="pick=yes",
            resource_version=rv,
            timeout_seconds=1,
        )
    ]
    assert seen == ["ADDED", "MODIFIED", "DELETED"]


def test_watch_bookmarks_carry_the_current_resource_version(api: FakeApiServer, core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    types = []
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_config_map, "default", resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=1
    ):
        types.append(event["type"])
        if event["type"] == "BOOKMARK":
            assert event["raw_object"]["metadata"]["resourceVersion"] == str(api.resource_version)
    assert types and set(types) == {"BOOKMARK"} and len(types) >= 3
    assert w.resource_version == str(api.resource_version)


def test_watch_from_a_compacted_resource_version_is_gone(api: FakeApiServer, core: client.CoreV1Api) -> None:
    old_rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
    api.compact()
    with pytest.raises(ApiException) as exc:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=old_rv, timeout_seconds=1
        ):
            pass
    assert exc.value.status == 410
    # The current version still works after compaction.
    new_rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "y"}})
    seen = [
        e["object"].metadata.name
        for e in watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=new_rv, timeout_seconds=1
        )
    ]
    assert seen == ["y"]


# ---- update, conflicts and the status subresource ------------------------------------------------------------


def test_stale_update_is_a_conflict(core: client.CoreV1Api, custom: client.CustomObjectsApi) -> None:
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "x"}, "data": {"v": "1"}})
    first = core.read_namespaced_config_map("x", "default")
    first.data = {"v": "2"}
    core.replace_namespaced_config_map("x", "default", first)
    cm.data = {"v": "3"}  # still carries the first resourceVersion
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map("x", "default", cm)
    assert exc.value.status == 409 and '"reason":"Conflict"' in exc.value.body
    assert core.read_namespaced_config_map("x", "default").data == {"v": "2"}
    stale = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget("w"))
    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w", {"spec": {"size": 5}})
    with pytest.raises(ApiException) as exc:
        custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w", stale)
    assert exc.value.status == 409
    del stale["metadata"]["resourceVersion"]  # custom resources need one for an update
    with pytest.raises(ApiException) as exc:
        custom.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w", stale)
    assert exc.value.status == 422


def test_concurrent_read_modify_write_loses_no_update(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "counter"}, "data": {"n": "0"}})

    def increment(times: int) -> None:
        for _ in range(times):
            while True:
                current = core.read_namespaced_config_map("counter", "default")
                current.data["n"] = str(int(current.data["n"]) + 1)
                try:
                    core.replace_namespaced_config_map("counter", "default", current)
                    break
                except ApiException as exc:
                    assert exc.status == 409  # someone else wrote first: read again

    workers = [threading.Thread(target=increment, args=(10,)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert core.read_namespaced_config_map("counter", "default").data["n"] == "40"


def test_status_subresource_semantics(custom: client.CustomObjectsApi) -> None:
    args = (GROUP, VERSION, "default", PLURAL)
    created = custom.create_namespaced_custom_object(*args, {**widget("w"), "status": {"phase": "Ignored"}})
    assert "status" not in created and created["metadata"]["generation"] == 1
    with_status = custom.patch_namespaced_custom_object_status(
        *args, "w", {"status": {"phase": "Running"}, "spec": {"color": "blue"}}
    )
    assert with_status["status"] == {"phase": "Running"} and with_status["spec"]["color"] == "red"
    assert with_status["metadata"]["generation"] == 1
    assert int(with_status["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    with_status["spec"]["color"] = "blue"
    with_status["status"] = {"phase": "Changed"}
    updated = custom.replace_namespaced_custom_object(*args, "w", with_status)
    assert updated["spec"]["color"] == "blue" and updated["status"] == {"phase": "Running"}
    assert updated["metadata"]["generation"] == 2
    again = custom.replace_namespaced_custom_object(*args, "w", updated)  # no-op: same resourceVersion back
    assert again["metadata"]["resourceVersion"] == updated["metadata"]["resourceVersion"]
    updated["status"] = {"phase": "Stopped"}
    replaced = custom.replace_namespaced_custom_object_status(*args, "w", updated)
    assert replaced["status"] == {"phase": "Stopped"} and replaced["metadata"]["generation"] == 2


def test_pod_status_and_spec_rules(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod("p"))
    core.patch_namespaced_pod("p", "default", {"status": {"phase": "Running"}})
    assert core.read_namespaced_pod("p", "default").status.phase == "Pending"  # main resource ignores status
    core.patch_namespaced_pod_status(
        "p", "default", {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    )
    core.patch_namespaced_pod_status(
        "p", "default", {"status": {"conditions": [{"type": "Initialized", "status": "True"}]}}
    )
    got = core.read_namespaced_pod("p", "default")
    assert got.status.phase == "Running" and {c.type for c in got.status.conditions} == {"Ready", "Initialized"}
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_pod("p", "default", {"spec": {"restartPolicy": "Never"}})
    assert exc.value.status == 422
    core.patch_namespaced_pod("p", "default", {"spec": {"containers": [{"name": "main", "image": "busybox:1.37"}]}})
    assert core.read_namespaced_pod("p", "default").spec.containers[0].image == "busybox:1.37"
    # A replace whose spec omits what defaulting fills in is not a change (the defaults are applied again).
    bare = pod("p", serviceAccountName="default", containers=[{"name": "main", "image": "busybox:1.38"}])
    bare["metadata"]["resourceVersion"] = core.read_namespaced_pod("p", "default").metadata.resource_version
    assert core.replace_namespaced_pod("p", "default", bare).spec.containers[0].image == "busybox:1.38"


# ---- patch flavours --------------------------------------------------------------------------------------------


def test_patch_content_types(custom: client.CustomObjectsApi) -> None:
    args = (GROUP, VERSION, "default", PLURAL)
    custom.create_namespaced_custom_object(*args, widget("w", labels={"a": "1", "b": "2"}))
    merged = custom.patch_namespaced_custom_object(*args, "w", {"spec": {"labels": {"a": None, "c": "3"}}})
    assert merged["spec"]["labels"] == {"b": "2", "c": "3"}
    json_patch = "application/json-patch+json"
    patched = custom.patch_namespaced_custom_object(
        *args, "w", [{"op": "replace", "path": "/spec/size", "value": 7}], _content_type=json_patch
    )
    assert patched["spec"]["size"] == 7
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(
            *args, "w", {"spec": {"size": 8}}, _content_type="application/strategic-merge-patch+json"
        )
    assert exc.value.status == 415
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(
            *args, "w", [{"op": "test", "path": "/spec/size", "value": 1}], _content_type=json_patch
        )
    assert exc.value.status == 422


def test_strategic_merge_patch_merges_keyed_lists(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod(
        "default",
        pod(
            "p",
            containers=[
                {"name": "a", "image": "x:1", "env": [{"name": "E1", "value": "1"}]},
                {"name": "b", "image": "y:1"},
            ],
        ),
    )
    core.patch_namespaced_pod("p", "default", {"spec": {"containers": [{"name": "b", "image": "y:2"}]}})
    core.patch_namespaced_pod("p", "default", {"metadata": {"finalizers": ["one"]}})
    core.patch_namespaced_pod("p", "default", {"metadata": {"finalizers": ["two"]}})
    got = core.read_namespaced_pod("p", "default")
    assert [(c.name, c.image) for c in got.spec.containers] == [("a", "x:1"), ("b", "y:2")]
    assert got.spec.containers[0].env[0].name == "E1"
    assert got.metadata.finalizers == ["one", "two"]


def test_server_side_apply_creates_then_converges(k8s: client.ApiClient, custom: client.CustomObjectsApi) -> None:
    dyn = dynamic.DynamicClient(k8s)
    widgets = dyn.resources.get(api_version=f"{GROUP}/{VERSION}", kind="Widget")
    first = widget("w", size=2, labels={"a": "1"})
    created = widgets.server_side_apply(body=first, namespace="default", field_manager="deployer")
    assert created.spec.size == 2 and created.metadata.managedFields[0].manager == "deployer"
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w", {"spec": {"extra": {"other": "kept"}}}
    )
    second = widget("w", labels={"b": "2"})  # size and labels.a no longer applied by this manager
    applied = widgets.server_side_apply(body=second, namespace="default", field_manager="deployer")
    assert applied.spec.labels.to_dict() == {"b": "2"}
    assert applied.spec.size == 3  # removed from the object, then defaulted by the schema
    assert applied.spec.extra.other == "kept"
    rv = applied.metadata.resourceVersion
    again = widgets.server_side_apply(body=second, namespace="default", field_manager="deployer")
    assert again.metadata.resourceVersion == rv  # converged: re-applying is a no-op
    with pytest.raises(ApiException) as exc:
        widgets.server_side_apply(
            body=widget("w", "blue", labels={"b": "2"}), namespace="default", field_manager="other"
        )
    assert exc.value.status == 409
    # Fields written by a plain patch belong to its manager (the client's User-Agent product) too.
    updater = next(m for m in again.metadata.managedFields if m.operation == "Update")
    assert updater.manager == "OpenAPI-Generator" and "f:other" in str(updater.fieldsV1)
    with pytest.raises(ApiException) as exc:
        widgets.server_side_apply(body=widget("w", extra={"other": "mine"}), namespace="default", field_manager="other")
    assert exc.value.status == 409 and 'conflict with \\"OpenAPI-Generator\\": .spec.extra.other' in exc.value.body
    forced = widgets.server_side_apply(
        body=widget("w", "blue"), namespace="default", field_manager="other", force_conflicts=True
    )
    assert forced.spec.color == "blue"


# ---- deletion: finalizers, graceful pods, garbage collection, namespaces ---------------------------------------


def test_finalizers_keep_the_object_with_a_deletion_timestamp(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "f", "finalizers": ["example.com/hold"]}})
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.delete_namespaced_config_map("f", "default")
    held = core.read_namespaced_config_map("f", "default")
    assert held.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_config_map("f", "default", {"metadata": {"finalizers": ["example.com/hold", "new"]}})
    assert exc.value.status == 422
    core.patch_namespaced_config_map("f", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("f", "default")
    assert exc.value.status == 404
    events = [
        e["type"]
        for e in watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=1
        )
    ]
    assert events == ["MODIFIED", "DELETED"]  # emptying the finalizers is the deletion itself


def test_pod_graceful_deletion_and_binding(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod("p"))
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "p"},
        "target": {"kind": "Node", "name": "node-1"},
    }
    # The real endpoint answers with a Status, which the client cannot read as a V1Binding: take it raw.
    core.create_namespaced_pod_binding("p", "default", binding, _preload_content=False)
    bound = core.read_namespaced_pod("p", "default")
    assert bound.spec.node_name == "node-1" and bound.status.conditions[0].type == "PodScheduled"
    core.delete_namespaced_pod("p", "default")
    terminating = core.read_namespaced_pod("p", "default")  # waits for the kubelet
    assert (
        terminating.metadata.deletion_timestamp is not None and terminating.metadata.deletion_grace_period_seconds == 30
    )
    core.delete_namespaced_pod("p", "default", grace_period_seconds=0)  # the kubelet confirms
    assert not core.list_namespaced_pod("default").items
    core.create_namespaced_pod("default", pod("unbound"))
    core.delete_namespaced_pod("unbound", "default")  # never scheduled: gone at once
    assert not core.list_namespaced_pod("default").items


def _owned(name: str, owner: dict[str, Any], block: bool = False) -> dict[str, Any]:
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    if block:
        ref["blockOwnerDeletion"] = True
    return {"metadata": {"name": name, "ownerReferences": [ref]}}


def test_owner_references_garbage_collection_cascades(
    api: FakeApiServer, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    args = (GROUP, VERSION, "default", PLURAL)
    top = custom.create_namespaced_custom_object(*args, widget("top"))
    middle = custom.create_namespaced_custom_object(
        *args, {**widget("middle"), **{"metadata": _owned("middle", top)["metadata"]}}
    )
    middle_cm = {
        **core.api_client.sanitize_for_serialization(
            core.create_namespaced_config_map("default", _owned("leaf", middle))
        ),
        "apiVersion": "v1",
        "kind": "ConfigMap",
    }
    core.create_namespaced_config_map("default", _owned("leaf-of-leaf", middle_cm))
    core.create_namespaced_config_map("default", {"metadata": {"name": "unrelated"}})
    custom.delete_namespaced_custom_object(*args, "top")
    api.wait_for("widgets", lambda objs: not objs, timeout=5)
    with pytest.raises(TimeoutError):
        api.wait_for("widgets", lambda objs: len(objs) == 99, timeout=0.2)
    eventually(lambda: names(api.objects("configmaps", "default")) == ["kube-root-ca.crt", "unrelated"])
    # An owner in another namespace does not count, as for the real garbage collector.
    core.create_namespace({"metadata": {"name": "elsewhere"}})
    remote = custom.create_namespaced_custom_object(GROUP, VERSION, "elsewhere", PLURAL, widget("remote"))
    core.create_namespaced_config_map("default", _owned("cross-namespace", remote))
    eventually(lambda: "cross-namespace" not in names(api.objects("configmaps", "default")))
    # An owner reference to an object that does not exist is collected too.
    ghost = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ghost", "uid": "00000000-0000-0000-0000-000000000000"},
    }
    core.create_namespaced_config_map("default", _owned("orphaned", ghost))
    eventually(lambda: "orphaned" not in names(api.objects("configmaps", "default")))


def test_foreground_and_orphan_propagation(
    api: FakeApiServer, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    args = (GROUP, VERSION, "default", PLURAL)
    owner = custom.create_namespaced_custom_object(*args, widget("fg"))
    core.create_namespaced_config_map(
        "default", {"metadata": {**_owned("child", owner, block=True)["metadata"], "finalizers": ["hold"]}}
    )
    custom.delete_namespaced_custom_object(*args, "fg", propagation_policy="Foreground")
    waiting = custom.get_namespaced_custom_object(*args, "fg")
    assert "foregroundDeletion" in waiting["metadata"]["finalizers"] and waiting["metadata"]["deletionTimestamp"]
    eventually(lambda: core.read_namespaced_config_map("child", "default").metadata.deletion_timestamp)
    assert custom.get_namespaced_custom_object(*args, "fg")  # blocked by its child's finalizer
    core.patch_namespaced_config_map("child", "default", {"metadata": {"finalizers": None}})
    eventually(lambda: not api.objects("widgets"))

    keeper = custom.create_namespaced_custom_object(*args, widget("keeper"))
    core.create_namespaced_config_map("default", _owned("survivor", keeper))
    custom.delete_namespaced_custom_object(*args, "keeper", propagation_policy="Orphan")
    eventually(lambda: not api.objects("widgets"))
    survivor = core.read_namespaced_config_map("survivor", "default")
    assert not survivor.metadata.owner_references


def test_namespace_deletion_removes_its_content(api: FakeApiServer, core: client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "scratch"}})
    assert core.read_namespaced_service_account("default", "scratch")
    core.create_namespaced_config_map("scratch", {"metadata": {"name": "held", "finalizers": ["hold"]}})
    core.delete_namespace("scratch")
    assert core.read_namespace("scratch").status.phase == "Terminating"
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("scratch", {"metadata": {"name": "late"}})
    assert exc.value.status == 403
    eventually(lambda: names(api.objects("configmaps", "scratch")) == ["held"])
    core.patch_namespaced_config_map("held", "scratch", {"metadata": {"finalizers": None}})
    eventually(lambda: "scratch" not in names(api.objects("namespaces")))


def test_workload_and_binding_validation(k8s: client.ApiClient) -> None:
    apps = client.AppsV1Api(k8s)
    rbac = client.RbacAuthorizationV1Api(k8s)
    daemonset = {
        "metadata": {"name": "handler"},
        "spec": {
            "selector": {"matchLabels": {"app": "handler"}},
            "template": {
                "metadata": {"labels": {"app": "other"}},
                "spec": {"containers": [{"name": "h", "image": "h:1"}]},
            },
        },
    }
    with pytest.raises(ApiException) as exc:
        apps.create_namespaced_daemon_set("default", daemonset)
    assert exc.value.status == 422 and "selector` does not match template `labels`" in exc.value.body
    daemonset["spec"]["template"]["metadata"]["labels"] = {"app": "handler", "tier": "node"}
    apps.create_namespaced_daemon_set("default", daemonset)
    with pytest.raises(ApiException) as exc:
        apps.patch_namespaced_daemon_set(
            "handler", "default", {"spec": {"selector": {"matchLabels": {"tier": "node"}}}}
        )
    assert exc.value.status == 422 and "field is immutable" in exc.value.body
    binding = {
        "metadata": {"name": "b"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}],
    }
    rbac.create_cluster_role_binding(binding)
    with pytest.raises(ApiException) as exc:
        rbac.patch_cluster_role_binding("b", {"roleRef": {"name": "edit"}})
    assert exc.value.status == 422 and "cannot change roleRef" in exc.value.body


# ---- CRDs ------------------------------------------------------------------------------------------------------


def test_crd_schema_validation_pruning_and_defaults(custom: client.CustomObjectsApi) -> None:
    args = (GROUP, VERSION, "default", PLURAL)
    with pytest.raises(ApiException) as exc:
        custom.create_namespaced_custom_object(*args, widget("bad", "green"))
    assert exc.value.status == 422 and "spec.color" in exc.value.body and "Unsupported value" in exc.value.body
    with pytest.raises(ApiException) as exc:
        custom.create_namespaced_custom_object(*args, {**widget("bad"), "spec": {"size": 2}})
    assert exc.value.status == 422 and "spec.color: Required value" in exc.value.body
    with pytest.raises(ApiException) as exc:
        custom.create_namespaced_custom_object(*args, widget("bad", size=0))
    assert exc.value.status == 422
    ok = custom.create_namespaced_custom_object(
        *args, widget("ok", memory="1Gi", unknown=1, extra={"free": {"form": 1}}, labels=None)
    )
    assert ok["spec"] == {"color": "red", "size": 3, "memory": "1Gi", "extra": {"free": {"form": 1}}}
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(*args, "ok", {"spec": {"size": "big"}})
    assert exc.value.status == 422


def test_printer_columns_through_server_side_tables(custom: client.CustomObjectsApi) -> None:
    args = (GROUP, VERSION, "default", PLURAL)
    custom.create_namespaced_custom_object(*args, widget("shown"))
    status = {
        "phase": "Running",
        "conditions": [{"type": "Paused", "status": "False"}, {"type": "Ready", "status": "True"}],
    }
    custom.patch_namespaced_custom_object_status(*args, "shown", {"status": status})
    accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    listed = custom.list_namespaced_custom_object(*args, _headers=accept)
    assert listed["kind"] == "Table"
    assert [c["name"] for c in listed["columnDefinitions"]] == ["Name", "Age", "Phase", "Ready"]
    [row] = listed["rows"]
    name, age, phase, ready = row["cells"]
    assert (name, phase, ready) == ("shown", "Running", "True") and age.endswith("s")
    one = custom.get_namespaced_custom_object(*args, "shown", _headers=accept)
    assert one["rows"][0]["cells"][0] == "shown"


def test_crd_registration_at_runtime_and_removal(k8s: client.ApiClient, api: FakeApiServer) -> None:
    ext = client.ApiextensionsV1Api(k8s)
    custom = client.CustomObjectsApi(k8s)
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.org"},
        "spec": {
            "group": "example.org",
            "scope": "Cluster",
            "names": {"plural": "gadgets", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    ext.create_custom_resource_definition(crd)
    established = eventually(
        lambda: any(
            c.type == "Established" and c.status == "True"
            for c in ext.read_custom_resource_definition("gadgets.example.org").status.conditions or []
        )
    )
    assert established
    custom.create_cluster_custom_object(
        "example.org",
        "v1alpha1",
        "gadgets",
        {"apiVersion": "example.org/v1alpha1", "kind": "Gadget", "metadata": {"name": "g"}, "anything": [1]},
    )
    assert custom.get_cluster_custom_object("example.org", "v1alpha1", "gadgets", "g")["anything"] == [1]
    ext.delete_custom_resource_definition("gadgets.example.org")
    eventually(
        lambda: (
            not api.objects("customresourcedefinitions")
            or "gadgets.example.org" not in names(api.objects("customresourcedefinitions"))
        )
    )
    with pytest.raises(ApiException) as exc:
        custom.list_cluster_custom_object("example.org", "v1alpha1", "gadgets")
    assert exc.value.status == 404


def test_status_writes_are_validated_and_pruned_by_the_status_schema(k8s: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(k8s)
    custom = client.CustomObjectsApi(k8s)
    status_schema = {"type": "object", "properties": {"level": {"type": "integer", "maximum": 10}}}
    schema = {
        "openAPIV3Schema": {
            "type": "object",
            "properties": {
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "status": status_schema,
            },
        }
    }
    ext.create_custom_resource_definition(
        {
            "metadata": {"name": "gauges.example.net"},
            "spec": {
                "group": "example.net",
                "scope": "Namespaced",
                "names": {"plural": "gauges", "kind": "Gauge"},
                "versions": [
                    {"name": "v1", "served": True, "storage": True, "subresources": {"status": {}}, "schema": schema}
                ],
            },
        }
    )
    args = ("example.net", "v1", "default", "gauges")
    custom.create_namespaced_custom_object(
        *args, {"apiVersion": "example.net/v1", "kind": "Gauge", "metadata": {"name": "g"}, "spec": {}}
    )
    for bad in ({"level": "high"}, {"level": 11}):
        with pytest.raises(ApiException) as exc:
            custom.patch_namespaced_custom_object_status(*args, "g", {"status": bad})
        assert exc.value.status == 422 and "status.level" in exc.value.body
    ok = custom.patch_namespaced_custom_object_status(*args, "g", {"status": {"level": 3, "kopf": {"progress": {}}}})
    assert ok["status"] == {"level": 3}  # kopf's progress would be pruned here: no preserve-unknown-fields


def test_an_invalid_crd_given_at_start_fails_the_start() -> None:
    bad = {**WIDGET_CRD, "metadata": {"name": "wrong-name"}}
    server = FakeApiServer(crds=[bad])
    with pytest.raises(StatusError, match="must be spec.names.plural"):
        server.start()
    server.stop()  # nothing left to stop


def test_crd_with_several_served_versions_shares_storage(k8s: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(k8s)
    custom = client.CustomObjectsApi(k8s)
    schema = {
        "openAPIV3Schema": {
            "type": "object",
            "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        }
    }
    ext.create_custom_resource_definition(
        {
            "metadata": {"name": "things.example.net"},
            "spec": {
                "group": "example.net",
                "scope": "Namespaced",
                "names": {"plural": "things", "kind": "Thing"},
                "versions": [
                    {"name": "v1beta1", "served": True, "storage": False, "schema": schema},
                    {"name": "v1", "served": True, "storage": True, "schema": schema},
                ],
            },
        }
    )
    custom.create_namespaced_custom_object(
        "example.net",
        "v1beta1",
        "default",
        "things",
        {"apiVersion": "example.net/v1beta1", "kind": "Thing", "metadata": {"name": "t"}, "spec": {"a": 1}},
    )
    got = custom.get_namespaced_custom_object("example.net", "v1", "default", "things", "t")
    assert got["apiVersion"] == "example.net/v1" and got["spec"] == {"a": 1}
    group = client.ApisApi(k8s).get_api_versions().groups
    preferred = next(g for g in group if g.name == "example.net").preferred_version.version
    assert preferred == "v1"
    with pytest.raises(ApiException) as exc:  # a schema that is not structural (spec has no type) is refused
        ext.create_custom_resource_definition(
            {
                "metadata": {"name": "loose.example.net"},
                "spec": {
                    "group": "example.net",
                    "scope": "Namespaced",
                    "names": {"plural": "loose", "kind": "Loose"},
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "properties": {"spec": {"properties": {"n": {"type": "integer"}}}},
                                }
                            },
                        }
                    ],
                },
            }
        )
    assert exc.value.status == 422 and "spec.versions[0].schema.openAPIV3Schema.properties[spec].type" in exc.value.body


def test_delete_collection_and_dry_run(api: FakeApiServer, core: client.CoreV1Api) -> None:
    for i in range(3):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"batch-{i}", "labels": {"batch": "yes"}}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "dry"}}, dry_run="All")
    assert "dry" not in names(api.objects("configmaps", "default"))
    core.delete_namespaced_config_map("batch-0", "default", dry_run="All")
    assert "batch-0" in names(api.objects("configmaps", "default"))
    core.delete_collection_namespaced_config_map("default", label_selector="batch=yes")
    assert names(api.objects("configmaps", "default")) == ["kube-root-ca.crt"]


# ---- kopf ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("initial_streaming", [False, True], ids=["list-then-watch", "watch-list"])
def test_kopf_operator_handles_create_delete_and_patches_status(
    api: FakeApiServer, custom: client.CustomObjectsApi, initial_streaming: bool
) -> None:
    registry = kopf.OperatorRegistry()
    deleted: list[str] = []
    args = (GROUP, VERSION, "default", PLURAL)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.watching.initial_streaming = initial_streaming

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=api.url, token=TOKEN)

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    def created(spec: Any, patch: kopf.Patch, **_: Any) -> None:
        patch.status["seenColor"] = spec["color"]

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def removed(name: str, **_: Any) -> None:
        deleted.append(name)

    custom.create_namespaced_custom_object(*args, widget("before", "red"))  # found by the initial listing
    stop = threading.Event()
    ready = threading.Event()
    operator = threading.Thread(
        target=lambda: asyncio.run(
            kopf.operator(registry=registry, clusterwide=True, standalone=True, stop_flag=stop, ready_flag=ready)
        ),
        daemon=True,
    )
    operator.start()
    try:
        assert ready.wait(20)
        custom.create_namespaced_custom_object(*args, widget("after", "blue"))

        def seen(name: str) -> Any:
            return (custom.get_namespaced_custom_object(*args, name).get("status") or {}).get("seenColor")

        assert eventually(lambda: seen("before"), 20) == "red"
        assert eventually(lambda: seen("after"), 20) == "blue"
        held = custom.get_namespaced_custom_object(*args, "after")
        assert held["metadata"]["finalizers"]  # kopf's own, for the delete handler
        custom.delete_namespaced_custom_object(*args, "after")
        eventually(lambda: "after" not in names(api.objects("widgets")), 20)
        assert deleted == ["after"]
        assert api.request_count("patch", f"{PLURAL}.{GROUP}/status") >= 2
        assert api.request_count("watch", f"{PLURAL}.{GROUP}") >= 1
        assert api.request_count("list", f"{PLURAL}.{GROUP}") == (0 if initial_streaming else 1)
    finally:
        stop.set()
        operator.join(20)


# ---- authentication and RBAC -----------------------------------------------------------------------------------


def test_rbac_is_enforced_for_service_account_tokens(
    api: FakeApiServer, core: client.CoreV1Api, tmp_path: Path
) -> None:
    rbac = client.RbacAuthorizationV1Api(core.api_client)
    core.create_namespaced_service_account("default", {"metadata": {"name": "handler"}})
    rbac.create_cluster_role(
        {
            "metadata": {"name": "widget-status"},
            "rules": [
                {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]},
                {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["patch"]},
            ],
        }
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": "handler"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "widget-status"},
            "subjects": [{"kind": "ServiceAccount", "name": "handler", "namespace": "default"}],
        }
    )
    rbac.create_namespaced_role(
        "default",
        {
            "metadata": {"name": "cm-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["allowed"], "verbs": ["get"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        "default",
        {
            "metadata": {"name": "cm-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "handler"}],
        },
    )
    client.CustomObjectsApi(core.api_client).create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, widget("w")
    )
    core.create_namespaced_config_map("default", {"metadata": {"name": "allowed"}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "secret-ish"}})

    as_handler = config.new_client_from_config(
        str(api.kubeconfig(tmp_path / "handler", token=api.token_for("default", "handler")))
    )
    custom = client.CustomObjectsApi(as_handler)
    handler_core = client.CoreV1Api(as_handler)
    assert names(custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]) == ["w"]
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "w", {"status": {"phase": "Running"}}
    )
    assert handler_core.read_namespaced_config_map("allowed", "default").metadata.name == "allowed"
    assert dynamic.DynamicClient(as_handler).resources.get(api_version="v1", kind="Pod")  # discovery is open
    denied: list[Callable[[], Any]] = [
        lambda: custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w", {"spec": {"size": 9}}),
        lambda: custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w"),
        lambda: handler_core.read_namespaced_config_map("secret-ish", "default"),
        lambda: handler_core.list_namespaced_config_map("default"),
        lambda: handler_core.list_namespaced_pod("kube-system"),
    ]
    for attempt in denied:
        with pytest.raises(ApiException) as exc:
            attempt()
        assert exc.value.status == 403, exc.value.body
    with pytest.raises(ApiException) as exc:
        handler_core.list_namespaced_pod("default")
    assert 'User \\"system:serviceaccount:default:handler\\" cannot list resource \\"pods\\"' in exc.value.body
    core.delete_namespaced_service_account("handler", "default")
    with pytest.raises(ApiException) as exc:
        handler_core.read_namespaced_config_map("allowed", "default")
    assert exc.value.status == 401  # the token died with its service account
    stranger = config.new_client_from_config(str(api.kubeconfig(tmp_path / "stranger", token="made-up")))
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(stranger).list_namespaced_pod("default")
    assert exc.value.status == 401


# ---- decoding of built-in types ----------------------------------------------------------------------------------


def test_built_in_objects_are_decoded_as_the_typed_server_does(api: FakeApiServer, k8s: client.ApiClient) -> None:
    # The typed CoreV1Api refuses unknown fields client-side; raw clients (dynamic, kopf) can send them.
    dyn = dynamic.DynamicClient(k8s)
    pods = dyn.resources.get(api_version="v1", kind="Pod")
    body = pod("p")
    body["spec"]["containers"][0]["imagePullPolicyy"] = "Never"  # a typo: dropped, with a warning
    body["spec"]["bogus"] = {"x": 1}
    request = urllib.request.Request(
        f"{api.url}/api/v1/namespaces/default/pods",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 201
        assert 'unknown field \\"spec.bogus\\"' in response.headers["Warning"]
    stored = pods.get(name="p", namespace="default").to_dict()
    assert "bogus" not in stored["spec"] and "imagePullPolicyy" not in stored["spec"]["containers"][0]
    with pytest.raises(ApiException) as exc:
        pods.create(
            body={**body, "metadata": {"name": "q"}}, namespace="default", query_params=[("fieldValidation", "Strict")]
        )
    assert exc.value.status == 400 and "strict decoding error" in exc.value.body
    bad = pod("r")
    bad["spec"]["containers"][0]["ports"] = [{"containerPort": "eighty"}]
    with pytest.raises(ApiException) as exc:
        pods.create(body=bad, namespace="default")
    assert exc.value.status == 400 and "cannot unmarshal string" in exc.value.body
    bad = pod("s")
    bad["spec"]["containers"][0]["resources"] = {"requests": {"memory": "1536MiB"}}
    with pytest.raises(ApiException) as exc:
        pods.create(body=bad, namespace="default")
    assert exc.value.status == 400 and "quantities must match" in exc.value.body


def test_pod_resources_are_validated(core: client.CoreV1Api) -> None:
    def with_resources(name: str, resources: dict[str, Any]) -> dict[str, Any]:
        body = pod(name)
        body["spec"]["containers"][0]["resources"] = resources
        return body

    kvm = "devices.kubevirt.io/kvm"
    ok = core.create_namespaced_pod(
        "default", with_resources("ok", {"requests": {"memory": "1Gi"}, "limits": {kvm: "1"}})
    )
    assert ok.spec.containers[0].resources.requests == {"memory": "1Gi", kvm: "1"}  # requests default to limits
    assert ok.status.qos_class == "Burstable"
    rejected = [
        {"requests": {kvm: "1"}},  # an extended resource needs a limit
        {"requests": {kvm: "2"}, "limits": {kvm: "1"}},
        {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}},
    ]
    for i, resources in enumerate(rejected):
        with pytest.raises(ApiException) as exc:
            core.create_namespaced_pod("default", with_resources(f"bad-{i}", resources))
        assert exc.value.status == 422, resources


def test_server_side_apply_of_a_built_in_merges_keyed_lists(k8s: client.ApiClient) -> None:
    dyn = dynamic.DynamicClient(k8s)
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "controller", "labels": {"app": "c"}},
        "spec": {
            "selector": {"matchLabels": {"app": "c"}},
            "template": {
                "metadata": {"labels": {"app": "c"}},
                "spec": {"containers": [{"name": "main", "image": "ctl:1", "env": [{"name": "A", "value": "1"}]}]},
            },
        },
    }
    deployments.server_side_apply(body=manifest, namespace="default", field_manager="installer")
    sidecar = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "controller"},
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "side:1"}]}}},
    }
    deployments.server_side_apply(body=sidecar, namespace="default", field_manager="injector")
    manifest["spec"]["template"]["spec"]["containers"][0]["image"] = "ctl:2"
    merged = deployments.server_side_apply(body=manifest, namespace="default", field_manager="installer")
    containers = {c.name: c.image for c in merged.spec.template.spec.containers}
    assert containers == {"main": "ctl:2", "sidecar": "side:1"}
    entries = {m.manager for m in merged.metadata.managedFields}
    assert entries == {"installer", "injector"}
    assert merged.metadata.generation == 3  # created, sidecar added, image changed


# ---- optional controllers ----------------------------------------------------------------------------------------


def test_optional_scheduler_and_provisioner(tmp_path: Path) -> None:
    with FakeApiServer(scheduler=True, provisioner=True) as api:
        core = client.CoreV1Api(config.new_client_from_config(str(api.kubeconfig(tmp_path / "kubeconfig"))))
        core.create_namespaced_persistent_volume_claim(
            "default",
            {
                "metadata": {"name": "disk"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
            },
        )
        claim = eventually(
            lambda: (c := core.read_namespaced_persistent_volume_claim("disk", "default")).status.phase == "Bound" and c
        )
        assert claim.status.capacity == {"storage": "2Gi"}
        assert core.read_persistent_volume(claim.spec.volume_name).spec.claim_ref.name == "disk"
        core.create_namespaced_pod("default", pod("gpu", nodeSelector={"kind": "kvm"}))
        core.create_namespaced_pod("default", pod("any"))
        unschedulable = eventually(lambda: core.read_namespaced_pod("any", "default").status.conditions)
        assert unschedulable[0].reason == "Unschedulable"
        core.create_node(
            {"metadata": {"name": "plain"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        )
        core.create_node(
            {
                "metadata": {"name": "kvm", "labels": {"kind": "kvm"}},
                "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]},
            }
        )
        assert eventually(lambda: core.read_namespaced_pod("any", "default").spec.node_name) == "plain"
        assert core.read_namespaced_pod("gpu", "default").spec.node_name is None  # the taint is not tolerated
        core.patch_node("kvm", {"spec": {"taints": None}})
        assert eventually(lambda: core.read_namespaced_pod("gpu", "default").spec.node_name) == "kvm"


# ---- in its own process ----------------------------------------------------------------------------------------


def test_server_in_a_child_process(tmp_path: Path) -> None:
    crd_file = tmp_path / "widgets.yaml"
    crd_file.write_text(yaml.safe_dump(WIDGET_CRD))
    with FakeApiProcess(tmp_path / "kubeconfig", crds=[crd_file]) as api:
        custom = client.CustomObjectsApi(config.new_client_from_config(str(api.kubeconfig())))
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget("remote"))
        assert [o["metadata"]["name"] for o in api.objects("widgets", "default")] == ["remote"]
        assert api.request_count("create", f"{PLURAL}.{GROUP}") == 1
        assert api.tally("widgets", "default", "metadata.name") == (1, 1)
        assert api.tally("widgets", "default", "metadata.name", "remote") == (1, 1)
        assert api.tally("widgets", "default", "metadata.name", "other") == (1, 0)
        assert api.tally("widgets", "default", "status.nothing") == (1, 0)
        assert api.tally("widgets", "elsewhere", "metadata.name") == (0, 0)
        rv = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["metadata"]["resourceVersion"]
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget("later"))
        api.compact()
        with pytest.raises(ApiException) as exc:
            for _ in watch.Watch().stream(
                custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                "default",
                PLURAL,
                resource_version=rv,
                timeout_seconds=1,
            ):
                pass
        assert exc.value.status == 410


def test_pod_exec_streams_over_the_websocket_protocol(api: FakeApiServer, core: client.CoreV1Api) -> None:
    """The kubernetes client's stream() against pods/exec: stdin, stdout, stderr and the exit status (channel 3)."""
    from kubernetes.stream import stream

    from tests.fakekube.podexec import ExecTarget

    ran: list[tuple[str, list[str]]] = []

    def kubelet(pod_: dict[str, Any], container: str, command: list[str]) -> ExecTarget:
        ran.append((container, command))
        return ExecTarget(command)

    core.create_namespaced_pod("default", pod("p", nodeName="node-1"))
    with pytest.raises(ApiException) as unreachable:  # no kubelet serves the node: refused, not hung
        stream(core.connect_get_namespaced_pod_exec, "p", "default", command=["true"], stdout=True)
    reason = str(unreachable.value.reason)
    assert "Handshake status 500" in reason and "error dialing backend" in reason
    api.serve_exec("node-1", kubelet)

    script = ["sh", "-c", "echo hi; echo oops >&2"]
    out = stream(core.connect_get_namespaced_pod_exec, "p", "default", command=script, stdout=True, stderr=True)
    assert out == "hi\noops\n" and ran == [("main", ["sh", "-c", "echo hi; echo oops >&2"])]

    session = stream(
        core.connect_get_namespaced_pod_exec,
        "p",
        "default",
        command=["sh", "-c", "head -c 6 | tr a-z A-Z; exit 3"],
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    session.write_stdin(b"abc")  # two messages: the command reads one stream
    session.write_stdin(b"def")
    session.run_forever(timeout=30)
    assert session.read_stdout() == "ABCDEF" and session.returncode == 3
    assert api.request_count("create", "pods/exec") == 3  # authorized as a create on pods/exec

    with pytest.raises(ApiException) as bad:  # the client reports a refused upgrade as status 0, with the answer
        stream(core.connect_get_namespaced_pod_exec, "p", "default", command=["true"], container="nope", stdout=True)
    assert "Handshake status 400" in bad.value.reason and "container nope is not valid for pod p" in bad.value.reason
    core.create_namespaced_pod("default", pod("unbound"))
    with pytest.raises(ApiException) as unbound:
        stream(core.connect_get_namespaced_pod_exec, "unbound", "default", command=["true"], stdout=True)
    assert "does not have a host assigned" in unbound.value.reason
