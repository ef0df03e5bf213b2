"""Manifests the Migration controller creates: the plan ConfigMap, the state PVC, each VM's PVCs, its Jobs.

A VM's Job runs `migrator migrate --plan … --vm NAME` (the cutover pipeline, one VM) from the
project's image, with each of the VM's claims mounted at ``/var/run/migrator/volumes/<claim>/``
(the disks are written into them) and the migrations' state on the Migration's state PVC (a
retried attempt resumes from the recorded step). The source's password comes from the Secret
the Migration names, as an environment variable: never from the resource, never in a file.
"""

from __future__ import annotations

from typing import Any

from core.quantity import claim_bytes, format_quantity
from runtime.migration.decisions import CANCEL, Start
from runtime.migration.plan import PlanVM

GROUP, VERSION, PLURAL = "migrator.io", "v1alpha1", "migrations"
LABEL_MIGRATION = "migrator.io/migration"
LABEL_MIGRATION_NAMESPACE = "migrator.io/migration-namespace"
LABEL_VM = "migrator.io/vm"
LABEL_PURPOSE = "migrator.io/purpose"
LABEL_ATTEMPT = "migrator.io/attempt"
ANNOTATION_VM = "migrator.io/source-name"
PROGRESS = "migrator.io/progress"
CANCEL_ANNOTATION = "migrator.io/cancel"  # on a Job's pod: its migration rolls back at the next safe point
DEFAULT_IMAGE = "localhost/migrator-runtime:latest"
PLAN_DIR = "/etc/migrator/plan"
VOLUMES_DIR = "/var/run/migrator/volumes"
STATE_DIR = "/var/lib/migrator/state"
SCRATCH_DIR = "/var/cache"
STATE_SIZE = "1Gi"


def _dns(text: str, limit: int = 63) -> str:
    return text[:limit].rstrip("-.")


def owner(migration: dict[str, Any]) -> dict[str, Any]:
    meta = migration["metadata"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Migration",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _meta(migration: dict[str, Any], name: str, namespace: str, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {
            LABEL_MIGRATION: migration["metadata"]["name"],
            LABEL_MIGRATION_NAMESPACE: migration["metadata"]["namespace"],
            **labels,
        },
    }
    if namespace == migration["metadata"]["namespace"]:
        meta["ownerReferences"] = [owner(migration)]
    return meta


def plan_configmap_name(migration: dict[str, Any]) -> str:
    return _dns(f"{migration['metadata']['name']}-plan", 253)


def plan_configmap(migration: dict[str, Any], plan_text: str, namespace: str) -> dict[str, Any]:
    """The plan, in the namespace the Jobs run in (a pod mounts only its own namespace's ConfigMaps)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(migration, plan_configmap_name(migration), namespace),
        "data": {"plan.yaml": plan_text},
    }


def state_claim(migration: dict[str, Any]) -> str:
    return _dns(f"{migration['metadata']['name']}-state")


def state_pvc(migration: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(migration, state_claim(migration), namespace),
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": STATE_SIZE}}},
    }


def disk_pvcs(migration: dict[str, Any], vm: PlanVM, namespace: str) -> list[dict[str, Any]]:
    """The VM's claims, as `migrator convert` names and sizes them (its apply converges them later)."""
    claims = []
    for disk in vm.disks:
        spec: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "volumeMode": "Filesystem",
            "resources": {"requests": {"storage": format_quantity(claim_bytes(disk.capacity_bytes))}},
        }
        if disk.storage_class:
            spec["storageClassName"] = disk.storage_class
        claims.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": _meta(migration, disk.claim, namespace, **{LABEL_VM: vm.target_name}),
                "spec": spec,
            }
        )
    return claims


SERVICE_ACCOUNT = "migrator-migration"  # bound to the ClusterRole of the same name (runtime/deploy/40-migration.yaml)


def service_account(migration: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(migration, SERVICE_ACCOUNT, namespace)}


def role_binding(migration: dict[str, Any], namespace: str) -> dict[str, Any]:
    """What the Jobs' pods may do in the target namespace: the ClusterRole, bound here only."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(migration, SERVICE_ACCOUNT, namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": SERVICE_ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}],
    }


def job_name(migration: dict[str, Any], vm: PlanVM, start: Start) -> str:
    kind = "cancel" if start.purpose == CANCEL else str(start.attempt)
    suffix = f"-{vm.target_name}-{kind}"
    return _dns(_dns(migration["metadata"]["name"], 63 - len(suffix)) + suffix)


def job(
    migration: dict[str, Any],
    vm: PlanVM,
    start: Start,
    *,
    namespace: str,
    max_rate: str | None,
) -> dict[str, Any]:
    spec = migration["spec"]
    secret = spec["sourceSecretRef"]
    args = ["-m", "migrator", "migrate", "--plan", f"{PLAN_DIR}/plan.yaml", "--vm", vm.name]
    args += ["--namespace", namespace, "--volumes-dir", VOLUMES_DIR, "--progress", "pod", "--max-in-flight", "1"]
    if max_rate:
        args += ["--max-rate", max_rate]
    if start.purpose == CANCEL:
        args += ["--cancel", vm.name]
    labels = {
        LABEL_MIGRATION: migration["metadata"]["name"],
        LABEL_MIGRATION_NAMESPACE: migration["metadata"]["namespace"],
        LABEL_VM: vm.target_name,
        LABEL_PURPOSE: start.purpose,
        LABEL_ATTEMPT: str(start.attempt),
    }
    mounts = [
        {"name": "plan", "mountPath": PLAN_DIR, "readOnly": True},
        {"name": "scratch", "mountPath": SCRATCH_DIR},
        {"name": "state", "mountPath": STATE_DIR},
    ] + [{"name": f"disk-{i}", "mountPath": f"{VOLUMES_DIR}/{d.claim}"} for i, d in enumerate(vm.disks)]
    volumes = [
        {"name": "plan", "configMap": {"name": plan_configmap_name(migration)}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "state", "persistentVolumeClaim": {"claimName": state_claim(migration)}},
    ] + [{"name": f"disk-{i}", "persistentVolumeClaim": {"claimName": d.claim}} for i, d in enumerate(vm.disks)]
    env = [
        {"name": "MIGRATOR_STATE_DIR", "value": STATE_DIR},
        {"name": "XDG_CACHE_HOME", "value": SCRATCH_DIR},  # convert's images before they go into the claims
        {
            "name": "MIGRATOR_VSPHERE_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": secret["name"], "key": secret.get("key", "password")}},
        },
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            **_meta(migration, job_name(migration, vm, start), namespace, **labels),
            "annotations": {ANNOTATION_VM: vm.name},
        },
        "spec": {
            "backoffLimit": 0,  # the controller retries, so every failure is seen and explained
            "template": {
                "metadata": {"labels": labels, "annotations": {ANNOTATION_VM: vm.name}},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "containers": [
                        {
                            "name": "migrate",
                            "image": spec.get("image") or DEFAULT_IMAGE,
                            "command": ["python3"],
                            "args": args,
                            "env": env,
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }
