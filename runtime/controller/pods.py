"""Pure: the launcher Pod of a VirtualMachineInstance.

Memory request = guest memory + overhead, where

    overhead = 256 MiB (launcher: Python, libvirtd, virtlogd, QEMU's own code)
             + 16 MiB per vCPU (vCPU threads, their stacks and KVM/TCG state)
             + guest / 64  (QEMU's per-guest-page structures, page tables; ~1.6 %)
             + 16 MiB with EFI firmware (OVMF code and NVRAM)

rounded up to a MiB. Guest memory is ``domain.memory.guest``, else ``domain.resources.requests.memory``,
else the limit. (KubeVirt's own estimate has the same shape with more terms, e.g. for the GPU/SR-IOV
devices this runtime does not run.)

The state dir (``launcher.sock``, ``console.sock``...) lives on a hostPath directory shared with the
node handler, which mounts the same host directory: ``SOCKETS_DIR/<namespace>_<name>_<uid>/``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from core.quantity import parse_quantity
from runtime.controller.names import (
    DISKS_DIR,
    LABEL_APP,
    LABEL_CREATED_BY,
    LABEL_DOMAIN,
    LABEL_VM_NAME,
    LAUNCHER_CONTAINER,
    SOCKETS_DIR,
    SOCKETS_VOLUME,
    state_dir_name,
)

MIB = 1024 * 1024
BASE_OVERHEAD = 256 * MIB
PER_VCPU_OVERHEAD = 16 * MIB
EFI_OVERHEAD = 16 * MIB
DEFAULT_IMAGE = "localhost/migrator-runtime:latest"
KVM_RESOURCE = "devices.kubevirt.io/kvm"
ACCEL_CACHE = ".accel"  # under SOCKETS_DIR: not a state dir (the handler cleans only those with a result)


def guest_memory_bytes(spec: dict[str, Any]) -> int:
    domain = spec.get("domain") or {}
    resources = domain.get("resources") or {}
    for value in (
        (domain.get("memory") or {}).get("guest"),
        (resources.get("requests") or {}).get("memory"),
        (resources.get("limits") or {}).get("memory"),
    ):
        if value is not None:
            return parse_quantity(value)
    return 128 * MIB


def vcpus(spec: dict[str, Any]) -> int:
    cpu = (spec.get("domain") or {}).get("cpu") or {}
    return max(1, int(cpu.get("sockets") or 1) * int(cpu.get("cores") or 1) * int(cpu.get("threads") or 1))


def memory_overhead_bytes(spec: dict[str, Any]) -> int:
    efi = "efi" in (((spec.get("domain") or {}).get("firmware") or {}).get("bootloader") or {})
    guest = guest_memory_bytes(spec)
    return BASE_OVERHEAD + PER_VCPU_OVERHEAD * vcpus(spec) + math.ceil(guest / 64) + (EFI_OVERHEAD if efi else 0)


def memory_request(spec: dict[str, Any]) -> str:
    total = guest_memory_bytes(spec) + memory_overhead_bytes(spec)
    return f"{math.ceil(total / MIB)}Mi"


def claim_of(volume: dict[str, Any]) -> str | None:
    if "persistentVolumeClaim" in volume:
        return str(volume["persistentVolumeClaim"].get("claimName"))
    if "dataVolume" in volume:  # CDI names a DataVolume's PVC after it
        return str(volume["dataVolume"].get("name"))
    return None


def claims(spec: dict[str, Any]) -> list[str]:
    return [c for c in (claim_of(v) for v in spec.get("volumes") or []) if c]


def pod_name(vmi: dict[str, Any]) -> str:
    metadata = vmi["metadata"]
    return f"virt-launcher-{metadata['name']}-{metadata['uid'].replace('-', '')[:5]}"


def launcher_pod(
    vmi: dict[str, Any], *, image: str = DEFAULT_IMAGE, kvm: bool = False, service_account: str = "default"
) -> dict[str, Any]:
    """The launcher Pod for ``vmi`` (which has metadata.uid). ``kvm``: a node offers devices.kubevirt.io/kvm."""
    metadata = vmi["metadata"]
    name, namespace, uid = metadata["name"], metadata.get("namespace") or "default", metadata["uid"]
    spec = vmi.get("spec") or {}
    state_dir = f"{SOCKETS_DIR}/{state_dir_name(namespace, name, uid)}"
    launcher_vmi = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "spec": spec,
    }
    volumes: list[dict[str, Any]] = [
        {"name": SOCKETS_VOLUME, "hostPath": {"path": SOCKETS_DIR, "type": "DirectoryOrCreate"}}
    ]
    mounts: list[dict[str, Any]] = [{"name": SOCKETS_VOLUME, "mountPath": SOCKETS_DIR}]
    for volume in spec.get("volumes") or []:
        claim = claim_of(volume)
        if claim is None:
            continue
        volumes.append({"name": volume["name"], "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": volume["name"], "mountPath": f"{DISKS_DIR}/{volume['name']}"})
    resources: dict[str, Any] = {"requests": {"memory": memory_request(spec), "cpu": _cpu_request(spec)}}
    command = ["python3", "-m", "runtime.launcher", "--disk-root", DISKS_DIR, "--state-dir", state_dir]
    if kvm:
        resources["requests"][KVM_RESOURCE] = "1"
        resources["limits"] = {KVM_RESOURCE: "1"}
        command += ["--accel", "auto"]
    else:
        command += ["--accel", "tcg"]
    labels = {
        LABEL_APP: "virt-launcher",
        LABEL_CREATED_BY: uid,
        LABEL_VM_NAME: name,
        LABEL_DOMAIN: name,
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,
        # The launcher shuts the guest down within the instance's grace period; +15 s as KubeVirt.
        "terminationGracePeriodSeconds": int(spec.get("terminationGracePeriodSeconds", 30)) + 15,
        "containers": [
            {
                "name": LAUNCHER_CONTAINER,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": command,
                "env": [
                    {"name": "MIGRATOR_VMI_JSON", "value": json.dumps(launcher_vmi, sort_keys=True)},
                    # the KVM probe's answer, once per node boot, on the hostPath every launcher of the node mounts
                    {"name": "MIGRATOR_ACCEL_CACHE_DIR", "value": f"{SOCKETS_DIR}/{ACCEL_CACHE}"},
                ],
                "resources": resources,
                "volumeMounts": mounts,
                "securityContext": {
                    "runAsUser": 0,
                    "capabilities": {"add": ["NET_ADMIN", "SYS_NICE", "SYS_RESOURCE"]},
                },
            }
        ],
        "volumes": volumes,
    }
    for key in (
        "nodeSelector",
        "tolerations",
        "affinity",
        "schedulerName",
        "priorityClassName",
        "dnsPolicy",
        "dnsConfig",
    ):
        if spec.get(key):
            pod_spec[key] = spec[key]
    if spec.get("hostname"):
        pod_spec["hostname"] = spec["hostname"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(vmi),
            "namespace": namespace,
            "labels": labels,
            "annotations": {"kubevirt.io/domain": name},
            "ownerReferences": [
                {
                    "apiVersion": "kubevirt.io/v1",
                    "kind": "VirtualMachineInstance",
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": pod_spec,
    }


def _cpu_request(spec: dict[str, Any]) -> str:
    requests = ((spec.get("domain") or {}).get("resources") or {}).get("requests") or {}
    return str(requests.get("cpu") or "100m")
