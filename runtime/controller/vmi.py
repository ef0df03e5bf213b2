"""VirtualMachineInstance → launcher Pod; pod phase → instance phase; the instance's finalizer."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from runtime.controller import status as rules
from runtime.controller.api import Api, ApiError, core_path, ignore, newer_exists, object_path
from runtime.controller.lookups import Lookups
from runtime.controller.names import LABEL_NODE, VMI_FINALIZER, VMIS
from runtime.controller.pods import DEFAULT_IMAGE, claims, launcher_pod, pod_name

log = logging.getLogger(__name__)
Writes = Callable[[], Awaitable[None]]  # what a plan leaves to do: the API writes, a coroutine
FollowWrites = Callable[[], Awaitable[dict[str, Any] | None]]  # the same, returning the instance as written
Step = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]  # a write applied to the newest copy


class VmiReconciler:
    def __init__(self, api: Api, *, image: str | None = None) -> None:
        self.api = api
        self.image = image or os.environ.get("MIGRATOR_RUNTIME_IMAGE", DEFAULT_IMAGE)

    def plan(self, vmi: dict[str, Any], lookups: Lookups) -> Writes | None:
        """What the instance's own changes call for, decided without I/O (the writes, or None): its finalizer,
        its pod's creation, its deletion; and, once the guest is over (or its pod is), the end of the pod.
        Following the pod's phase is ``plan_follow``'s, on the pod's events: one writer for it, so the two do
        not race.

        ``vmi``: the newest copy the watch delivered; its pod comes from the cache. A 409 on a write (a stale
        copy) is dropped: the newer version's event reconciles again.
        """
        metadata = vmi["metadata"]
        namespace = metadata["namespace"]
        pod = lookups.pod(namespace, pod_name(vmi))
        if metadata.get("deletionTimestamp"):
            return _guarded(self._plan_deletion(vmi, pod))
        steps: list[Step] = []
        if VMI_FINALIZER not in (metadata.get("finalizers") or []):
            finalizers = [*(metadata.get("finalizers") or []), VMI_FINALIZER]
            steps.append(lambda current: self._patch_meta(current, {"finalizers": finalizers}))
        phase = rules.phase_of(vmi)
        if pod is None and phase in ("", "Pending"):
            missing = [c for c in claims(vmi.get("spec") or {}) if not lookups.pvc_exists(namespace, c)]
            if missing:  # the claim appearing is an event (the PVC's) that reconciles again
                changes = _pvc_condition(vmi, missing)
                if changes != {k: (vmi.get("status") or {}).get(k) for k in changes}:
                    steps.append(lambda current: self._patch_status(current, changes))
            else:
                kvm = lookups.node_offers_kvm()
                steps.append(lambda current: self._create_pod(current, kvm))
        else:
            pod_over = pod is None or (pod.get("status") or {}).get("phase") in rules.FINAL
            if phase in rules.FINAL or (pod_over and phase not in ("", "Pending")):
                follow = self._plan_follow(vmi, pod)
                if follow is not None:
                    steps.append(follow)
        if not steps:
            return None

        async def writes() -> None:
            current: dict[str, Any] = vmi
            for step in steps:
                current = await step(current) or current

        return _guarded(writes)

    async def _create_pod(self, vmi: dict[str, Any], kvm: bool) -> None:
        namespace, name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
        body = launcher_pod(vmi, image=self.image, kvm=kvm)
        try:
            await self.api.create(core_path("pods", namespace), body)
            log.info("%s/%s: created launcher pod %s", namespace, name, body["metadata"]["name"])
        except ApiError as error:
            if error.status != 409:
                raise
        # the pod's events move the instance on

    def plan_follow(self, vmi: dict[str, Any], pod: dict[str, Any] | None) -> FollowWrites | None:
        """The instance's phase (Scheduling, Scheduled, Succeeded, Failed) and node label from its pod's; the
        deletion's end once the pod is gone. Decided without I/O: the writes (which return the instance as
        written, or None), or None when there is nothing to write."""
        if vmi["metadata"].get("deletionTimestamp"):
            deletion = self._plan_deletion(vmi, pod)
            if deletion is None:
                return None

            async def finish() -> None:
                await newer_exists(deletion())

            return finish
        follow = self._plan_follow(vmi, pod)
        if follow is None:
            return None
        planned = follow

        async def follow_newest() -> dict[str, Any] | None:
            return await newer_exists(planned(vmi))

        return follow_newest

    def _plan_follow(self, vmi: dict[str, Any], pod: dict[str, Any] | None) -> Step | None:
        """The writes that make the instance follow its pod, applied to the instance's newest copy; or None."""
        metadata = vmi["metadata"]
        namespace = metadata["namespace"]
        changes = rules.vmi_status_from_pod(vmi, pod)
        node = changes.get("nodeName")
        label = node if node and (metadata.get("labels") or {}).get(LABEL_NODE) != node else None
        existing = (vmi.get("status") or {}).get("conditions") or []
        if pod is not None and any(c.get("type") == "Synchronized" for c in existing):
            # The claims exist now: the PVC condition goes.
            kept = changes.get("conditions", existing)
            changes["conditions"] = [c for c in kept if c.get("type") != "Synchronized"]
        over = rules.phase_of(vmi) in rules.FINAL or changes.get("phase") in rules.FINAL
        # The guest is over: a launcher that still runs (the handler saw it die, or hang) goes too.
        stop_pod = (
            over
            and pod is not None
            and not (pod.get("metadata") or {}).get("deletionTimestamp")
            and (pod.get("status") or {}).get("phase") not in rules.FINAL
        )
        if not label and not changes and not stop_pod:
            return None

        async def follow(current: dict[str, Any]) -> dict[str, Any] | None:
            written = None
            if label or changes:  # one call, one watch event: the status is no subresource (as in KubeVirt)
                written = await self._patch(current, {"labels": {LABEL_NODE: label}} if label else {}, changes)
            if stop_pod and pod is not None:
                await ignore((404,), self.api.delete(core_path("pods", namespace, pod["metadata"]["name"])))
            return written

        return follow

    def _plan_deletion(self, vmi: dict[str, Any], pod: dict[str, Any] | None) -> Writes | None:
        """A deleted instance: its pod goes first; the finalizer goes once the kubelet has stopped the launcher
        and removed the pod. The write that step needs, or None."""
        namespace = vmi["metadata"]["namespace"]
        if pod is not None:
            if pod["metadata"].get("deletionTimestamp"):
                return None
            pod_name_ = pod["metadata"]["name"]

            async def delete_pod() -> None:
                log.info("%s/%s: instance deleted: deleting its pod", namespace, vmi["metadata"]["name"])
                await ignore((404,), self.api.delete(core_path("pods", namespace, pod_name_)))

            return delete_pod
        finalizers = vmi["metadata"].get("finalizers") or []
        if VMI_FINALIZER not in finalizers:
            return None
        kept = [f for f in finalizers if f != VMI_FINALIZER]

        async def drop_finalizer() -> None:
            await self._patch_meta(vmi, {"finalizers": kept})

        return drop_finalizer

    async def _patch_meta(self, vmi: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
        return await self._patch(vmi, metadata, {})

    async def _patch_status(self, vmi: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        return await self._patch(vmi, {}, changes)

    async def _patch(self, vmi: dict[str, Any], metadata: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """One merge patch of the instance's metadata and status, guarded by its resourceVersion (a 409 when
        stale). The instance's status is no subresource, as in KubeVirt: the main resource takes both."""
        meta = vmi["metadata"]
        body: dict[str, Any] = {"metadata": {**metadata, "resourceVersion": meta["resourceVersion"]}}
        if status:
            body["status"] = status
        return await self.api.merge_patch(object_path(VMIS, meta["namespace"], meta["name"]), body)


def _guarded(writes: Writes | None) -> Writes | None:
    """The writes, with a 409 (a stale copy: the newer version's event reconciles again) dropped."""
    if writes is None:
        return None
    planned = writes

    async def guarded() -> None:
        await newer_exists(planned())

    return guarded


def _pvc_condition(vmi: dict[str, Any], missing: list[str]) -> dict[str, Any]:
    message = "PVC " + ", ".join(missing) + " not found"
    conditions = [c for c in (vmi.get("status") or {}).get("conditions") or [] if c.get("type") != "Synchronized"]
    conditions.append({"type": "Synchronized", "status": "False", "reason": "FailedPvcNotFound", "message": message})
    return {"phase": "Pending", "conditions": conditions}
