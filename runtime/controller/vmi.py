"""VirtualMachineInstance → launcher Pod; pod phase → instance phase; the instance's finalizer."""

from __future__ import annotations

import logging
import os
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from runtime.controller import status as rules
from runtime.controller.kube import ignore, newer_exists
from runtime.controller.lookups import Lookups
from runtime.controller.names import GROUP, LABEL_NODE, VERSION, VMI_FINALIZER, VMIS
from runtime.controller.pods import DEFAULT_IMAGE, claims, launcher_pod, pod_name

log = logging.getLogger(__name__)


class VmiReconciler:
    def __init__(self, client: kubernetes.client.ApiClient, *, image: str | None = None) -> None:
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.image = image or os.environ.get("MIGRATOR_RUNTIME_IMAGE", DEFAULT_IMAGE)

    def reconcile(self, vmi: dict[str, Any], lookups: Lookups) -> None:
        """What the instance's own changes call for: its finalizer, its pod's creation, its deletion; and, once
        the guest is over (or its pod is), the end of the pod. Following the pod's phase is ``follow_pod``'s,
        called on the pod's events: one writer for it, so the two do not race.

        ``vmi``: the newest copy the watch delivered; its pod comes from the index. A 409 on a write (a stale
        copy) is dropped: the newer version's event reconciles again.
        """
        newer_exists(lambda: self._reconcile(vmi, lookups))

    def _reconcile(self, vmi: dict[str, Any], lookups: Lookups) -> None:
        metadata = vmi["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        pod = lookups.pod(namespace, pod_name(vmi))
        if metadata.get("deletionTimestamp"):
            self._finish_deletion(vmi, pod)
            return
        if VMI_FINALIZER not in (metadata.get("finalizers") or []):
            vmi = self._patch_meta(vmi, {"finalizers": [*(metadata.get("finalizers") or []), VMI_FINALIZER]})
        phase = rules.phase_of(vmi)
        if pod is None and phase in ("", "Pending"):
            missing = [c for c in claims(vmi.get("spec") or {}) if not lookups.pvc_exists(namespace, c)]
            if missing:  # the claim appearing is an event (the PVC index) that reconciles again
                changes = _pvc_condition(vmi, missing)
                if changes != {k: (vmi.get("status") or {}).get(k) for k in changes}:
                    self._patch_status(vmi, changes)
                return
            body = launcher_pod(vmi, image=self.image, kvm=lookups.node_offers_kvm())
            try:
                self.core.create_namespaced_pod(namespace, body, _preload_content=False)
                log.info("%s/%s: created launcher pod %s", namespace, name, body["metadata"]["name"])
            except ApiException as error:
                if error.status != 409:
                    raise
            return  # the pod's events move the instance on
        pod_over = pod is None or (pod.get("status") or {}).get("phase") in rules.FINAL
        if phase in rules.FINAL or (pod_over and phase not in ("", "Pending")):
            self._follow(vmi, pod)

    def follow_pod(self, vmi: dict[str, Any], pod: dict[str, Any] | None) -> dict[str, Any] | None:
        """The instance's phase (Scheduling, Scheduled, Succeeded, Failed) and node label from its pod's; the
        deletion's end once the pod is gone. Returns the instance as written, or None when nothing was (or a
        409 said a newer version exists)."""
        if vmi["metadata"].get("deletionTimestamp"):
            newer_exists(lambda: self._finish_deletion(vmi, pod))
            return None
        return newer_exists(lambda: self._follow(vmi, pod))

    def _follow(self, vmi: dict[str, Any], pod: dict[str, Any] | None) -> dict[str, Any] | None:
        metadata = vmi["metadata"]
        namespace = metadata["namespace"]
        written = None
        changes = rules.vmi_status_from_pod(vmi, pod)
        if changes.get("nodeName") and (metadata.get("labels") or {}).get(LABEL_NODE) != changes["nodeName"]:
            vmi = written = self._patch_meta(vmi, {"labels": {LABEL_NODE: changes["nodeName"]}})
        existing = (vmi.get("status") or {}).get("conditions") or []
        if pod is not None and any(c.get("type") == "Synchronized" for c in existing):
            # The claims exist now: the PVC condition goes.
            kept = changes.get("conditions", existing)
            changes["conditions"] = [c for c in kept if c.get("type") != "Synchronized"]
        if changes:
            written = self._patch_status(vmi, changes)
        if rules.phase_of(vmi) in rules.FINAL or changes.get("phase") in rules.FINAL:
            # The guest is over: a launcher that still runs (the handler saw it die, or hang) goes too.
            if pod is not None and not (pod.get("metadata") or {}).get("deletionTimestamp"):
                if (pod.get("status") or {}).get("phase") not in rules.FINAL:
                    ignore((404,), lambda: self.core.delete_namespaced_pod(pod["metadata"]["name"], namespace))
        return written

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

    def _patch_status(self, vmi: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        meta = vmi["metadata"]
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": changes}
        result: dict[str, Any] = self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, meta["namespace"], VMIS, meta["name"], body
        )
        return result


def _pvc_condition(vmi: dict[str, Any], missing: list[str]) -> dict[str, Any]:
    message = "PVC " + ", ".join(missing) + " not found"
    conditions = [c for c in (vmi.get("status") or {}).get("conditions") or [] if c.get("type") != "Synchronized"]
    conditions.append({"type": "Synchronized", "status": "False", "reason": "FailedPvcNotFound", "message": message})
    return {"phase": "Pending", "conditions": conditions}
