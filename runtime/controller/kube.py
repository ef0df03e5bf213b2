"""API access for the agents: clients from in-cluster config or a kubeconfig, and what a 404 or 409 means."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import kubernetes
from kubernetes.client.exceptions import ApiException

from runtime.controller.names import GROUP, VERSION, VMIS, VMS

log = logging.getLogger(__name__)
T = TypeVar("T")


POOL_SIZE = 32  # HTTP connections kept: as many as the controller's write threads


def api_client(kubeconfig: str | None = None) -> kubernetes.client.ApiClient:
    """In a pod: the service account; else ``kubeconfig`` or $KUBECONFIG / ~/.kube/config.

    The pool holds a connection per worker thread: the default (5 per CPU) makes the others open and drop a
    connection for each request.
    """
    configuration = kubernetes.client.Configuration()
    configuration.connection_pool_maxsize = POOL_SIZE
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        kubernetes.config.load_incluster_config(client_configuration=configuration)
        return kubernetes.client.ApiClient(configuration)
    client = kubernetes.config.new_client_from_config(config_file=kubeconfig, client_configuration=configuration)
    # A kubeconfig token makes the client re-apply the kubeconfig before every request (to refresh expiring
    # credentials), and each time it sets the host it derives the proxy from the environment again (a scan of
    # os.environ, ~15 % of a request's CPU). The proxy the environment gave at start, made explicit, stays.
    client.configuration.proxy = client.configuration.proxy
    return client


def ignore(statuses: tuple[int, ...], fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ApiException as error:
        if error.status in statuses:
            return None
        raise


def newer_exists(fn: Callable[[], T]) -> T | None:
    """Run a write that carries a resourceVersion or uid precondition; a 409 (a newer version of the object
    exists, whose watch event will reconcile again) ends it quietly, as None."""
    try:
        return fn()
    except ApiException as error:
        if error.status != 409:
            raise
        log.debug("conflict: a newer version is on its way")
        return None


def create_untyped(client: kubernetes.client.ApiClient, resource_path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST ``body`` (an object, as a dict) to ``resource_path`` as it is: what the server created, as a dict.

    The typed methods (``CoreV1Api.create_namespaced_pod``) first validate the dict into the client's pydantic
    models and dump it back: 40 % of the CPU of a launcher pod's creation (0.66 → 0.40 ms). This is the same
    request through the client's own two steps beneath them (auth, headers, the pool); the API server validates.
    """
    return write_untyped(client, "POST", resource_path, body, "application/json")


def merge_patch_untyped(
    client: kubernetes.client.ApiClient, resource_path: str, body: dict[str, Any]
) -> dict[str, Any]:
    """A JSON merge patch of ``resource_path``, as ``create_untyped`` sends a create: the patched object."""
    return write_untyped(client, "PATCH", resource_path, body, "application/merge-patch+json")


def write_untyped(
    client: kubernetes.client.ApiClient, method: str, resource_path: str, body: dict[str, Any], content_type: str
) -> dict[str, Any]:
    """One write through the client's ``param_serialize`` and ``call_api``; its answer read as JSON, an error
    status raised as the typed methods raise it (ApiException with its status)."""
    method, url, headers, serialized, post = client.param_serialize(
        method=method,
        resource_path=resource_path,
        header_params={"Accept": "application/json", "Content-Type": content_type},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = client.call_api(method, url, header_params=headers, body=serialized, post_params=post)
    response.read()
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=response.data.decode("utf-8", "replace"), data=None)
    answer: dict[str, Any] = json.loads(response.data)
    return answer


def object_path(plural: str, namespace: str, name: str = "", subresource: str = "") -> str:
    """The API path of a KubeVirt object (``name`` empty: its collection), quoted."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}/{plural}"
    if name:
        path += f"/{quote(name, safe='')}"
    return path + (f"/{subresource}" if subresource else "")


def list_uids(client: kubernetes.client.ApiClient, plural: str, namespace: str | None, selector: str = "") -> set[str]:
    """The uids of the objects of a kind (VMs, instances, pods, PVCs, nodes) that exist now: one list call, its
    body read as JSON (no typed models)."""
    custom = kubernetes.client.CustomObjectsApi(client)
    core = kubernetes.client.CoreV1Api(client)
    if plural in (VMS, VMIS):
        if namespace is None:
            listed = custom.list_cluster_custom_object(GROUP, VERSION, plural, label_selector=selector)
        else:
            listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural, label_selector=selector)
        items = listed.get("items") or []
    else:
        calls: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
            "pods": (core.list_pod_for_all_namespaces, core.list_namespaced_pod),
            "persistentvolumeclaims": (
                core.list_persistent_volume_claim_for_all_namespaces,
                core.list_namespaced_persistent_volume_claim,
            ),
        }
        if plural == "nodes":
            response = core.list_node(label_selector=selector, _preload_content=False)
        elif namespace is None:
            response = calls[plural][0](label_selector=selector, _preload_content=False)
        else:
            response = calls[plural][1](namespace, label_selector=selector, _preload_content=False)
        items = json.loads(response.data).get("items") or []
    return {str(item["metadata"]["uid"]) for item in items}


def connection_info(kubeconfig: str | None = None) -> Any:
    """kopf's credentials from the same source as ``api_client``."""
    import kopf

    configuration = kubernetes.client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    else:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    keys = configuration.api_key or {}
    raw = keys.get("BearerToken") or keys.get("authorization") or ""
    token = raw.removeprefix("Bearer ").strip() or None
    return kopf.ConnectionInfo(
        server=configuration.host,
        token=token,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )
