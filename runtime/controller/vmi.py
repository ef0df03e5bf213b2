"""VirtualMachineInstance → launcher Pod; pod phase → instance phase; the instance's finalizer."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from runtime.controller import status as rules
from runtime.controller.kube import get_or_none, ignore
from runtime.controller.names import GROUP, LABEL_NODE, VERSION, VMI_FINALIZER, VMIS
from runtime.controller.pods import DEFAULT_IMAGE, KVM_RESOURCE, claims, launcher_pod, pod_name

log = logging.getLogger(__name__)
PVC_RECHECK = 5.0
NODE_CACHE_SECONDS = 30.0


class VmiReconciler:
    def __init__(self, client: kubernetes.client.ApiClient, *, image: str | None = None, cache: Any = None) -> None:
        self.cache = cache
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.image = image or os.environ.get("MIGRATOR_RUNTIME_IMAGE", DEFAULT_IMAGE)
        self._kvm: tuple[float, bool] | None = None

    def reconcile(self, namespace: str, name: str, vmi: dict[str, Any] | None = None) -> float | None:
        """Create the instance's pod, follow its phase, finish its deletion. ``vmi``: as a watch event
        delivered it (else read; a stale copy ends in 409 and a retry with a fresh read)."""
        if vmi is None:
            vmi = get_or_none(lambda: self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, VMIS, name))
        if vmi is None:
            return None
        metadata = vmi["metadata"]
        pod = self.cache.get("pods", namespace, pod_name(vmi)) if self.cache is not None else None
        if pod is None:
            pod = _json(
                get_or_none(lambda: self.core.read_namespaced_pod(pod_name(vmi), namespace, _preload_content=False))
            )
        if metadata.get("deletionTimestamp"):
            self._finish_deletion(vmi, pod)
            return None
        if VMI_FINALIZER not in (metadata.get("finalizers") or []):
            vmi = self._patch_meta(vmi, {"finalizers": [*(metadata.get("finalizers") or []), VMI_FINALIZER]})
        phase = rules._phase(vmi)
        requeue = None
        if pod is None and phase in ("", "Pending"):
            missing = [c for c in claims(vmi.get("spec") or {}) if not self._pvc_exists(namespace, c)]
            if missing:
                self._patch_status(vmi, _pvc_condition(vmi, missing))
                return PVC_RECHECK
            body = launcher_pod(vmi, image=self.image, kvm=self._node_offers_kvm())
            try:
                pod = self.core.create_namespaced_pod(namespace, body, _preload_content=False)
                pod = _json(pod)
                log.info("%s/%s: created launcher pod %s", namespace, name, body["metadata"]["name"])
            except ApiException as error:
                if error.status != 409:
                    raise
                pod = _json(self.core.read_namespaced_pod(body["metadata"]["name"], namespace, _preload_content=False))
        changes = rules.vmi_status_from_pod(vmi, pod)
        if changes.get("nodeName") and (metadata.get("labels") or {}).get(LABEL_NODE) != changes["nodeName"]:
            vmi = self._patch_meta(vmi, {"labels": {LABEL_NODE: changes["nodeName"]}})
        existing = (vmi.get("status") or {}).get("conditions") or []
        if pod is not None and any(c.get("type") == "Synchronized" for c in existing):
            # The claims exist now: the PVC condition goes.
            kept = changes.get("conditions", existing)
            changes["conditions"] = [c for c in kept if c.get("type") != "Synchronized"]
        if changes:
            self._patch_status(vmi, changes)
        if rules._phase(vmi) in rules.FINAL or changes.get("phase") in rules.FINAL:
            # The guest is over: a launcher that still runs (the handler saw it die, or hang) goes too.
            if pod is not None and not (pod.get("metadata") or {}).get("deletionTimestamp"):
                if (pod.get("status") or {}).get("phase") not in rules.FINAL:
                    ignore((404,), lambda: self.core.delete_namespaced_pod(pod["metadata"]["name"], namespace))
        return requeue

    def _finish_deletion(self, vmi: dict[str, Any], pod: dict[str, Any] | None) -> None:
        namespace = vmi["metadata"]["namespace"]
        if pod is not None:
            if not pod["metadata"].get("deletionTimestamp"):
                log.info("%s/%s: instance deleted: deleting its pod", namespace, vmi["metadata"]["name"])
                ignore((404,), lambda: self.core.delete_namespaced_pod(pod["metadata"]["name"], namespace))
            return  # the finalizer goes once the kubelet has stopped the launcher and removed the pod
        finalizers = vmi["metadata"].get("finalizers") or []
        if VMI_FINALIZER in finalizers:
            self._patch_meta(vmi, {"finalizers": [f for f in finalizers if f != VMI_FINALIZER]})

    def _patch_meta(self, vmi: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
        meta = vmi["metadata"]
        body = {"metadata": {**metadata, "resourceVersion": meta["resourceVersion"]}}
        result: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], VMIS, meta["name"], body
        )
        return result

    def _patch_status(self, vmi: dict[str, Any], changes: dict[str, Any]) -> None:
        meta = vmi["metadata"]
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": changes}
        self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, meta["namespace"], VMIS, meta["name"], body)

    def _pvc_exists(self, namespace: str, claim: str) -> bool:
        return get_or_none(lambda: self.core.read_namespaced_persistent_volume_claim(claim, namespace)) is not None

    def _node_offers_kvm(self) -> bool:
        """Whether any node advertises devices.kubevirt.io/kvm (then the pod requests it); cached 30 s."""
        now = time.monotonic()
        if self._kvm is None or now - self._kvm[0] > NODE_CACHE_SECONDS:
            try:
                nodes = _json(self.core.list_node(_preload_content=False)).get("items") or []
            except ApiException as error:
                if error.status != 403:
                    raise
                nodes = []
            offers = any(
                int(str(((n.get("status") or {}).get("allocatable") or {}).get(KVM_RESOURCE, "0")) or 0) > 0
                for n in nodes
            )
            self._kvm = (now, offers)
        return self._kvm[1]


def _pvc_condition(vmi: dict[str, Any], missing: list[str]) -> dict[str, Any]:
    message = "PVC " + ", ".join(missing) + " not found"
    conditions = [c for c in (vmi.get("status") or {}).get("conditions") or [] if c.get("type") != "Synchronized"]
    conditions.append({"type": "Synchronized", "status": "False", "reason": "FailedPvcNotFound", "message": message})
    return {"phase": "Pending", "conditions": conditions}


def _json(response: Any) -> dict[str, Any] | None:
    """Raw responses (``_preload_content=False``): the typed models would cost the time of the call again."""
    if response is None:
        return None
    import json

    data: dict[str, Any] = json.loads(response.data)
    return data
