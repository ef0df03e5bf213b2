"""VirtualMachine → VirtualMachineInstance, per runStrategy and start/stop/restart requests; VM status."""

from __future__ import annotations

import logging
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from runtime.controller import status as rules
from runtime.controller.kube import get_or_none, ignore
from runtime.controller.names import GROUP, LABEL_VM_NAME, VERSION, VMI_FINALIZER, VMIS, VMS
from runtime.controller.pods import claims

log = logging.getLogger(__name__)
PVC_RECHECK = 5.0


class VmReconciler:
    def __init__(self, client: kubernetes.client.ApiClient, cache: Any = None) -> None:
        self.cache = cache
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.core = kubernetes.client.CoreV1Api(client)

    def reconcile(self, namespace: str, name: str, vm: dict[str, Any] | None = None) -> float | None:
        """Bring one VM's instance and status in line with its spec; returns seconds to recheck, or None.

        ``vm``: the object as a watch event just delivered it (else it is read); writes carry its
        resourceVersion, so a stale copy ends in 409 and a retry with a fresh read.
        """
        if vm is None:
            vm = get_or_none(lambda: self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, VMS, name))
        if vm is None:
            return None
        vmi = self.cache.get(VMIS, namespace, name) if self.cache is not None else None
        if vmi is None:
            vmi = get_or_none(lambda: self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, VMIS, name))
        if vmi is not None and not _owned_by(vmi, vm):
            log.warning("%s/%s: an instance of that name exists that this VM does not own; leaving it", namespace, name)
            vmi = None
        now = rules.now_utc()
        decision = rules.decide(vm, vmi, now)
        template_spec = ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}
        missing: list[str] = []
        requeue = decision.requeue_after
        if vmi is None or rules._phase(vmi) in rules.STARTING:
            missing = [c for c in claims(template_spec) if not self._pvc_exists(namespace, c)]
        if decision.action == "create":
            if missing:
                requeue = PVC_RECHECK
            else:
                vmi = self._create_instance(vm) or vmi
        elif decision.action == "delete" and vmi is not None:
            log.info("%s/%s: deleting its instance: %s", namespace, name, decision.reason)
            uid = vmi["metadata"]["uid"]
            ignore(
                (404, 409),
                lambda: self.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, VMIS, name, body={"preconditions": {"uid": uid}}
                ),
            )
            vmi = get_or_none(lambda: self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, VMIS, name))
        self._write_status(vm, vmi, missing, decision.start_failure, now)
        return requeue

    def _pvc_exists(self, namespace: str, claim: str) -> bool:
        return get_or_none(lambda: self.core.read_namespaced_persistent_volume_claim(claim, namespace)) is not None

    def _create_instance(self, vm: dict[str, Any]) -> dict[str, Any] | None:
        metadata = vm["metadata"]
        template = (vm.get("spec") or {}).get("template") or {}
        template_meta = template.get("metadata") or {}
        labels = dict(template_meta.get("labels") or {})
        labels[LABEL_VM_NAME] = metadata["name"]
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "VirtualMachineInstance",
            "metadata": {
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "labels": labels,
                "annotations": dict(template_meta.get("annotations") or {}),
                "finalizers": [VMI_FINALIZER],
                "ownerReferences": [
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "VirtualMachine",
                        "name": metadata["name"],
                        "uid": metadata["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template.get("spec") or {},
        }
        try:
            created = self.custom.create_namespaced_custom_object(GROUP, VERSION, metadata["namespace"], VMIS, body)
        except ApiException as error:
            if error.status == 409:  # created meanwhile (another worker, or before a restart)
                return None
            raise
        log.info("%s/%s: created its instance", metadata["namespace"], metadata["name"])
        return created

    def _write_status(
        self,
        vm: dict[str, Any],
        vmi: dict[str, Any] | None,
        missing: list[str],
        start_failure: dict[str, Any] | None,
        now: Any,
    ) -> None:
        current = vm.get("status") or {}
        if start_failure is not None:
            # Decide on the new failure record first: printableStatus depends on it.
            vm = {**vm, "status": {**current, "startFailure": start_failure or None}}
        wanted = rules.vm_status(vm, vmi, missing, now)
        patch: dict[str, Any] = {k: v for k, v in wanted.items() if current.get(k) != v}
        if start_failure is not None and (current.get("startFailure") or {}) != start_failure:
            patch["startFailure"] = start_failure or None
        if not patch:
            return
        metadata = vm["metadata"]
        # The resourceVersion precondition makes a status computed from a stale read fail with 409 (retried).
        body = {"metadata": {"resourceVersion": metadata["resourceVersion"]}, "status": patch}
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, metadata["namespace"], VMS, metadata["name"], body
        )


def _owned_by(vmi: dict[str, Any], vm: dict[str, Any]) -> bool:
    refs = (vmi.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == vm["metadata"]["uid"] for ref in refs)
