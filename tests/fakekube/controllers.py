"""Optional stand-ins for cluster controllers, off by default: a scheduler that binds pending pods to nodes,
a provisioner that binds claims to new volumes, and the Job controller (a pod per Job, its outcome counted).
They act through the store right after the request that triggered them, as a real controller reacts to a watch
event."""

from __future__ import annotations

import itertools
from typing import Any

from .errors import StatusError
from .store import Event, Obj, Store, bind_pod, deep, now

PODS = ("", "pods")
NODES = ("", "nodes")
PVCS = ("", "persistentvolumeclaims")
JOBS = ("batch", "jobs")


class _Coalesced:
    """A controller that makes one pass over the store after a burst of the events it cares for: the first such
    event schedules the pass, later ones before it runs join it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending = False
        store.hooks.append(self._on_event)

    def wants(self, event: Event) -> bool:
        raise NotImplementedError

    def reconcile(self) -> None:
        raise NotImplementedError

    def _on_event(self, event: Event) -> None:
        if self._pending or not self.wants(event):
            return
        self._pending = True
        self.store.schedule(self._run)

    def _run(self) -> None:
        self._pending = False
        self.reconcile()


class Scheduler(_Coalesced):
    """Binds pods (schedulerName default-scheduler, no nodeName) to a Ready, schedulable node whose labels match
    the pod's nodeSelector and whose NoSchedule/NoExecute taints the pod tolerates; round-robin among fitting
    nodes. A pod that fits nowhere gets PodScheduled=False/Unschedulable, and is retried when nodes change."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._turn = itertools.count()

    def wants(self, event: Event) -> bool:
        if event.key not in (PODS, NODES):
            return False
        return not (event.key == PODS and (event.type == "DELETED" or (event.obj.get("spec") or {}).get("nodeName")))

    def reconcile(self) -> None:
        store = self.store
        pods_rt = store.registry.get("", "v1", "pods")
        nodes = [n for n in store.buckets.get(NODES, {}).values() if _node_ready(n)]
        for pod in list(store.buckets.get(PODS, {}).values()):
            spec = pod.get("spec") or {}
            if spec.get("nodeName") or pod["metadata"].get("deletionTimestamp"):
                continue
            if spec.get("schedulerName", "default-scheduler") != "default-scheduler" or spec.get("schedulingGates"):
                continue
            fitting = [n for n in nodes if _fits(pod, n)]
            ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
            if fitting:
                node = fitting[next(self._turn) % len(fitting)]
                binding = {"target": {"kind": "Node", "name": node["metadata"]["name"]}}
                try:
                    bind_pod(store, pods_rt, ns, name, binding)
                except StatusError:
                    continue
            else:
                message = f"0/{len(store.buckets.get(NODES, {}))} nodes are available"
                conditions = (pod.get("status") or {}).get("conditions") or []
                if any(c.get("type") == "PodScheduled" and c.get("message") == message for c in conditions):
                    continue
                new = deep(pod)
                others = [c for c in conditions if c.get("type") != "PodScheduled"]
                unschedulable = {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                    "lastProbeTime": None,
                    "lastTransitionTime": now(),
                }
                new.setdefault("status", {})["conditions"] = [*others, unschedulable]
                try:
                    store._commit_update(pods_rt, pod, new, subresource="status")
                except StatusError:
                    continue


def _node_ready(node: Obj) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = [c for c in conditions if c.get("type") == "Ready"]
    return not ready or ready[0].get("status") == "True"


def _tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def _fits(pod: Obj, node: Obj) -> bool:
    spec = pod.get("spec") or {}
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(spec.get("tolerations") or [], taint):
            return False
    return True


class Provisioner:
    """Binds every new PersistentVolumeClaim to a new PersistentVolume of the requested size (a hostPath under
    /tmp/fakekube-pv), as a dynamic provisioner with volumeBindingMode Immediate."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.hooks.append(self._on_event)

    def _on_event(self, event: Event) -> None:
        if event.key == PVCS and event.type == "ADDED":
            ns, name = event.obj["metadata"]["namespace"], event.obj["metadata"]["name"]
            self.store.schedule(lambda: self._bind(ns, name))

    def _bind(self, namespace: str, name: str) -> None:
        store = self.store
        pvc_rt = store.registry.get("", "v1", "persistentvolumeclaims")
        pv_rt = store.registry.get("", "v1", "persistentvolumes")
        pvc = store.lookup(pvc_rt, namespace, name)
        if pvc is None or (pvc.get("status") or {}).get("phase") == "Bound":
            return
        spec = pvc.get("spec") or {}
        size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        modes = spec.get("accessModes") or ["ReadWriteOnce"]
        pv_name = f"pvc-{pvc['metadata']['uid']}"
        claim_ref = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": namespace,
            "name": name,
            "uid": pvc["metadata"]["uid"],
        }
        pv = {
            "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": "fakekube"}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": modes,
                "persistentVolumeReclaimPolicy": "Delete",
                "volumeMode": spec.get("volumeMode", "Filesystem"),
                "hostPath": {"path": f"/tmp/fakekube-pv/{pv_name}"},
                "claimRef": claim_ref,
                **({"storageClassName": spec["storageClassName"]} if spec.get("storageClassName") else {}),
            },
        }
        try:
            store.create(pv_rt, None, pv)
            bound = deep(pvc)
            bound["spec"]["volumeName"] = pv_name
            store._commit_update(pvc_rt, pvc, bound, subresource=None)
            pvc = store.lookup(pvc_rt, namespace, name)
            if pvc is None:
                return
            with_status = deep(pvc)
            with_status["status"] = {"phase": "Bound", "accessModes": modes, "capacity": {"storage": size}}
            store._commit_update(pvc_rt, pvc, with_status, subresource="status")
        except StatusError:
            return


class JobController(_Coalesced):
    """kube-controller-manager's Job controller, for ``restartPolicy: Never`` Jobs with ``completions: 1``: one pod
    from the template (labels ``job-name``/``batch.kubernetes.io/job-name``, ``controller-uid``; owned by the Job),
    another after each failure while ``status.failed <= backoffLimit``; ``status.active/succeeded/failed``,
    ``startTime``, ``completionTime`` and the ``Complete`` / ``Failed`` (BackoffLimitExceeded; PodFailurePolicy
    when a failed pod's exit code matches a FailJob rule of ``spec.podFailurePolicy``) conditions. A
    deleted Job's pods go with it (the garbage collector follows the owner reference)."""

    def wants(self, event: Event) -> bool:
        if event.key not in (JOBS, PODS):
            return False
        return event.key == JOBS or bool((event.obj["metadata"].get("labels") or {}).get("controller-uid"))

    def reconcile(self) -> None:
        store = self.store
        jobs_rt = store.registry.get("batch", "v1", "jobs")
        pods_rt = store.registry.get("", "v1", "pods")
        pods = list(store.buckets.get(PODS, {}).values())
        for job in list(store.buckets.get(JOBS, {}).values()):
            if job["metadata"].get("deletionTimestamp"):
                continue
            uid = job["metadata"]["uid"]
            mine = [p for p in pods if (p["metadata"].get("labels") or {}).get("controller-uid") == uid]
            phases = [(p.get("status") or {}).get("phase") for p in mine]
            succeeded = phases.count("Succeeded")
            failed = phases.count("Failed")
            active = len(mine) - succeeded - failed
            spec = job.get("spec") or {}
            limit = int(spec.get("backoffLimit", 6))
            status = deep(job.get("status") or {})
            conditions = [c for c in status.get("conditions") or [] if c.get("type") in ("Complete", "Failed")]
            finished = any(c.get("status") == "True" for c in conditions)
            policy = _pod_failure_policy(job, mine)
            if not finished and policy is not None:
                status.update(active=active, succeeded=succeeded, failed=failed)
                status["conditions"] = [_condition("Failed", "PodFailurePolicy", policy)]
                finished = True
            if not finished and not active and not succeeded and failed <= limit:
                active = 1 if self._create_pod(store, pods_rt, job, len(mine)) else 0
            status.update(active=active, succeeded=succeeded, failed=failed)
            status.setdefault("startTime", now())
            if not finished and succeeded:
                status["completionTime"] = now()
                status["conditions"] = [_condition("Complete", "Completed", "")]
            elif not finished and not active and failed > limit:
                status["conditions"] = [
                    _condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
                ]
            if status != (job.get("status") or {}):
                new = deep(job)
                new["status"] = status
                try:
                    store._commit_update(jobs_rt, job, new, subresource="status")
                except StatusError:
                    continue

    @staticmethod
    def _create_pod(store: Store, pods_rt: Any, job: Obj, index: int) -> bool:
        meta = job["metadata"]
        template = deep((job.get("spec") or {}).get("template") or {})
        labels = {
            **((template.get("metadata") or {}).get("labels") or {}),
            "controller-uid": meta["uid"],
            "batch.kubernetes.io/controller-uid": meta["uid"],
            "job-name": meta["name"],
            "batch.kubernetes.io/job-name": meta["name"],
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{meta['name']}-{index}{meta['uid'][:5]}"[:63],
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": (template.get("metadata") or {}).get("annotations") or {},
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template.get("spec") or {},
        }
        try:
            store.create(pods_rt, meta["namespace"], pod)
        except StatusError:  # e.g. its service account is missing: retried on the next event, as FailedCreate is
            return False
        return True


def _pod_failure_policy(job: Obj, pods: list[Obj]) -> str | None:
    """The message of a ``podFailurePolicy`` rule with action FailJob that a failed pod's exit code matches
    (``onExitCodes``, operator In/NotIn, optional containerName), as the Job controller words it; else None."""
    rules = ((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or []
    for pod in pods:
        if (pod.get("status") or {}).get("phase") != "Failed":
            continue
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            code = ((container.get("state") or {}).get("terminated") or {}).get("exitCode")
            if code is None or code == 0:
                continue
            for index, rule in enumerate(rules):
                match = rule.get("onExitCodes") or {}
                if match.get("containerName") not in (None, container.get("name")):
                    continue
                within = code in (match.get("values") or [])
                if within == (match.get("operator") == "In") and rule.get("action") == "FailJob":
                    return (
                        f"Container {container.get('name')} for pod {pod['metadata']['namespace']}/"
                        f"{pod['metadata']['name']} failed with exit code {code} matching FailJob rule at index {index}"
                    )
    return None


def _condition(kind: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": now(),
        "lastTransitionTime": now(),
    }
