"""VirtualMachine → VirtualMachineInstance, per runStrategy and start/stop/restart requests; VM status."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from runtime.controller import status as rules
from runtime.controller.api import Api, ApiError, ignore, newer_exists, object_path
from runtime.controller.lookups import Lookups, newest
from runtime.controller.names import GROUP, LABEL_VM_NAME, VERSION, VMI_FINALIZER, VMIS, VMS
from runtime.controller.pods import claims

log = logging.getLogger(__name__)
Writes = Callable[[], Awaitable[None]]  # what a plan leaves to do: the API writes, a coroutine
INDEX_LAG = 10.0  # seconds within which the watch delivers what this controller wrote


class VmReconciler:
    def __init__(self, api: Api) -> None:
        self.api = api

    def plan(
        self, vm: dict[str, Any], lookups: Lookups, memo: MutableMapping[str, Any] | None = None
    ) -> tuple[float | None, Writes | None]:
        """What one VM needs, decided without I/O: (seconds until time alone changes the decision, or None; the
        writes to make, or None when there is nothing to write).

        ``vm``: the newest copy the watch delivered; the instance comes from the cache. Writes carry the
        resourceVersion, so a stale copy ends in 409, which is dropped: the newer version's event follows.
        ``memo`` (the VM's kopf memo, in its own worker) keeps the VM and instance as last written here: newer
        than the event's copy and the cache until the watch delivers them. The writes update it.
        """
        memo = memo if memo is not None else {}
        vm = _newer_of(vm, memo, "vm")
        namespace, name = vm["metadata"]["namespace"], vm["metadata"]["name"]
        vmi = lookups.vmi(namespace, name)
        if vmi is not None:
            vmi = _newer_of(vmi, memo, "vmi")
        elif _just_created(memo):
            vmi = memo["vmi"]  # created here a moment ago; its ADDED event is not cached yet
        foreign = vmi is not None and not _owned_by(vmi, vm)
        if foreign:
            log.warning("%s/%s: an instance of that name exists that this VM does not own; leaving it", namespace, name)
            vmi = None
        now = rules.now_utc()
        decision = rules.decide(vm, vmi, now)
        template_spec = ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}
        missing: list[str] = []
        if vmi is None or rules.phase_of(vmi) in rules.STARTING:
            # a claim that appears later is an event (the PVC's) that reconciles this VM again
            missing = [c for c in claims(template_spec) if not lookups.pvc_exists(namespace, c)]
        creates = decision.action == "create" and not missing
        deletes = decision.action == "delete" and vmi is not None
        if not creates and not deletes and not status_patch(vm, vmi, missing, decision.start_failure, now):
            return decision.requeue_after, None

        async def writes() -> None:
            instance = vmi
            if creates:
                instance = await self._create_instance(vm)
                if instance is None and not foreign:
                    # 409: the instance exists, not cached yet. Only a reconcile of this VM creates one, from
                    # another worker (a claim's event, and this VM's own event in between): that one writes
                    # the status with its instance. Written here from none, it would read "Stopped", and the
                    # instance's ADDED event reconciles no VM.
                    return
                memo["vmi"], memo["vmi_written_at"] = instance, time.monotonic()
            elif deletes and instance is not None:
                instance = await self._delete_instance(instance, decision.reason)
                memo["vmi"], memo["vmi_written_at"] = instance, time.monotonic()
            try:
                written = await self._write_status(vm, instance, missing, decision.start_failure, now)
            except ApiError as error:
                if error.status != 409:
                    raise
                # The copy was stale. The newer version may be this controller's own status write, whose event
                # the VM's handler skips as its echo (and a reconcile from a claim's or an instance's event has
                # no memo of it): nothing would write this status then. Read the VM once and write again.
                written = await self._rewrite_status(vm, instance, missing, decision.start_failure, now)
            if written is not None:
                memo["vm"] = written

        return decision.requeue_after, writes

    async def _delete_instance(self, vmi: dict[str, Any], reason: str) -> dict[str, Any] | None:
        """Delete the instance (uid precondition); returns it while it terminates (its finalizer), else None."""
        namespace, name, uid = vmi["metadata"]["namespace"], vmi["metadata"]["name"], vmi["metadata"]["uid"]
        log.info("%s/%s: deleting its instance: %s", namespace, name, reason)
        deleted = await ignore(
            (404, 409), self.api.delete(object_path(VMIS, namespace, name), {"preconditions": {"uid": uid}})
        )
        # With its finalizer the instance stays, terminating, until the pod is gone; else it is gone now.
        is_instance = isinstance(deleted, dict) and deleted.get("kind") == "VirtualMachineInstance"
        return deleted if is_instance else None

    async def _create_instance(self, vm: dict[str, Any]) -> dict[str, Any] | None:
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
            created = await self.api.create(object_path(VMIS, metadata["namespace"]), body)
        except ApiError as error:
            if error.status == 409:  # created meanwhile (before a restart): its event follows
                return None
            raise
        log.info("%s/%s: created its instance", metadata["namespace"], metadata["name"])
        return created

    async def _rewrite_status(
        self,
        stale: dict[str, Any],
        vmi: dict[str, Any] | None,
        missing: list[str],
        start_failure: dict[str, Any] | None,
        now: Any,
    ) -> dict[str, Any] | None:
        namespace, name = stale["metadata"]["namespace"], stale["metadata"]["name"]
        fresh = await ignore((404,), self.api.get(object_path(VMS, namespace, name)))
        if not fresh or fresh["metadata"].get("uid") != stale["metadata"].get("uid"):
            return None  # gone, or another VM of that name: its own events reconcile it
        return await newer_exists(self._write_status(fresh, vmi, missing, start_failure, now))

    async def _write_status(
        self,
        vm: dict[str, Any],
        vmi: dict[str, Any] | None,
        missing: list[str],
        start_failure: dict[str, Any] | None,
        now: Any,
    ) -> dict[str, Any] | None:
        patch = status_patch(vm, vmi, missing, start_failure, now)
        if not patch:
            return None
        metadata = vm["metadata"]
        # The resourceVersion precondition makes a status computed from a stale copy fail with 409.
        body = {"metadata": {"resourceVersion": metadata["resourceVersion"]}, "status": patch}
        return await self.api.merge_patch(object_path(VMS, metadata["namespace"], metadata["name"], "status"), body)


def status_patch(
    vm: dict[str, Any],
    vmi: dict[str, Any] | None,
    missing: list[str],
    start_failure: dict[str, Any] | None,
    now: Any,
) -> dict[str, Any]:
    """Pure: the merge patch that brings the VM's status to what ``vm``, ``vmi`` and the time call for ({} if none)."""
    current = vm.get("status") or {}
    if start_failure is not None:
        # Decide on the new failure record first: printableStatus depends on it.
        vm = {**vm, "status": {**current, "startFailure": start_failure or None}}
    wanted = rules.vm_status(vm, vmi, missing, now)
    patch: dict[str, Any] = {k: v for k, v in wanted.items() if current.get(k) != v}
    if start_failure is not None and (current.get("startFailure") or {}) != start_failure:
        patch["startFailure"] = start_failure or None
    return patch


def _newer_of(current: dict[str, Any], memo: MutableMapping[str, Any], key: str) -> dict[str, Any]:
    """The newer of ``current`` and the copy remembered under ``key``, which is forgotten once caught up."""
    chosen = newest(current, memo.get(key))
    if chosen is current:
        memo.pop(key, None)
    return chosen


def _just_created(memo: MutableMapping[str, Any]) -> bool:
    """An instance this reconciler created, too recently for the cache to have it (else the cache is right:
    gone means gone)."""
    remembered = memo.get("vmi")
    if remembered is None or _deleting(remembered):
        return False
    return time.monotonic() - float(memo.get("vmi_written_at") or 0.0) < INDEX_LAG


def _deleting(obj: dict[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def _owned_by(vmi: dict[str, Any], vm: dict[str, Any]) -> bool:
    refs = (vmi.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == vm["metadata"]["uid"] for ref in refs)
