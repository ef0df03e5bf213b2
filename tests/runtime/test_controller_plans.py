"""The controller's handlers decide first (``plan``, no I/O) and then await the writes, if any: the events of a
VM's start that call for no write (the echoes of the controller's own writes, a pod not yet bound) plan none, and
those that do plan exactly the writes the start needs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
import kubernetes

from runtime.controller import status as rules
from runtime.controller.api import Api
from runtime.controller.kube import connection_info
from runtime.controller.names import LABEL_NODE, VMI_FINALIZER
from runtime.controller.pods import launcher_pod
from runtime.controller.vm import VmReconciler, status_patch
from runtime.controller.vmi import VmiReconciler
from runtime.deploy import crd_paths
from tests.fakekube import FakeApiServer

NAMESPACE = "plans"


@dataclass
class Objects:
    """The Lookups the handlers get from kopf's indexes, over plain dicts."""

    vms: dict[str, dict[str, Any]] = field(default_factory=dict)
    vmis: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)

    def vm(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.vms.get(name)

    def vmi(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.vmis.get(name)

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.pods.get(name)

    def pvc_exists(self, namespace: str, name: str) -> bool:
        return False

    def node_offers_kvm(self) -> bool:
        return False


def a_vm() -> dict[str, Any]:
    return {
        "metadata": {"name": "a", "namespace": NAMESPACE, "uid": "vm-uid", "resourceVersion": "10"},
        "spec": {"runStrategy": "Always", "template": {"spec": {"domain": {"memory": {"guest": "128Mi"}}}}},
    }


def its_instance(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "a",
            "namespace": NAMESPACE,
            "uid": "vmi-uid",
            "resourceVersion": "11",
            "creationTimestamp": rules.format_time(rules.now_utc()),
            "finalizers": [VMI_FINALIZER],
            "ownerReferences": [{"kind": "VirtualMachine", "name": "a", "uid": "vm-uid", "controller": True}],
        },
        "spec": {"domain": {"memory": {"guest": "128Mi"}}},
        "status": status,
    }


def no_login() -> kopf.ConnectionInfo:
    raise AssertionError("a plan made an API call")


def reconcilers(api: Api | None = None) -> tuple[VmReconciler, VmiReconciler]:
    api = api or Api(no_login)  # by default never called: plans do no I/O
    return VmReconciler(api), VmiReconciler(api)


def test_a_vm_start_plans_writes_only_where_something_changes() -> None:
    vms, vmis = reconcilers()
    objects = Objects()
    vm = a_vm()
    # VM added, no instance: create it and write the status
    _, writes = vms.plan(vm, objects, {})
    assert writes is not None
    # the echo of the status write (the VM Starting, its instance there and Pending): nothing to write
    instance = its_instance()
    objects.vmis["a"] = instance
    starting = {**vm, "status": status_patch(vm, instance, [], None, rules.now_utc())}
    assert starting["status"]["printableStatus"] == "Starting"
    assert vms.plan(starting, objects, {}) == (None, None)
    # instance added, no pod: create the pod
    assert vmis.plan(instance, objects) is not None
    # the pod added, not yet bound: its instance follows nothing yet
    pod = launcher_pod(instance)
    objects.pods[pod["metadata"]["name"]] = pod
    assert vmis.plan(instance, objects) is None
    assert vmis.plan_follow(instance, pod) is None
    # bound: the instance's label and phase follow (one write)
    bound = {**pod, "spec": {**pod["spec"], "nodeName": "node-1"}}
    assert vmis.plan_follow(instance, bound) is not None
    # the echoes of those writes: nothing for the instance, nothing for its VM (still Starting)
    scheduled = its_instance(phase="Scheduled", nodeName="node-1")
    scheduled["metadata"]["labels"] = {LABEL_NODE: "node-1"}
    objects.vmis["a"] = scheduled
    assert vmis.plan(scheduled, objects) is None
    assert vmis.plan_follow(scheduled, bound) is None
    assert vms.plan(starting, objects, {}) == (None, None)


def test_a_deleted_instance_plans_its_pod_deletion_then_its_finalizer() -> None:
    _, vmis = reconcilers()
    objects = Objects()
    instance = its_instance(phase="Scheduled")
    instance["metadata"]["deletionTimestamp"] = rules.format_time(rules.now_utc())
    pod = launcher_pod(instance)
    objects.pods[pod["metadata"]["name"]] = pod
    assert vmis.plan(instance, objects) is not None  # delete the pod
    pod["metadata"]["deletionTimestamp"] = instance["metadata"]["deletionTimestamp"]
    assert vmis.plan(instance, objects) is None  # the kubelet's turn
    objects.pods.clear()
    assert vmis.plan(instance, objects) is not None  # the finalizer goes
    instance["metadata"]["finalizers"] = []
    assert vmis.plan(instance, objects) is None


def test_a_status_written_from_a_stale_copy_is_written_again_from_a_fresh_read(tmp_path: Path) -> None:
    """A reconcile from a claim's or an instance's event has the index's copy of the VM, which may predate the
    controller's own last status write: the write's 409 must not end it, since the newer version's event is that
    echo, which the VM's handler skips. Against the fake API server, through the real client."""
    with FakeApiServer(crds=crd_paths()) as api:
        kubeconfig = str(api.kubeconfig(tmp_path / "kubeconfig"))
        client = kubernetes.config.new_client_from_config(kubeconfig)
        custom = kubernetes.client.CustomObjectsApi(client)
        body = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", **a_vm()}
        body["metadata"] = {"name": "a", "namespace": "default"}
        body["spec"]["template"]["spec"]["domain"]["devices"] = {}
        stale = custom.create_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", body)
        # the controller's earlier write (claim missing), which the index has not seen yet
        custom.patch_namespaced_custom_object_status(
            "kubevirt.io", "v1", "default", "virtualmachines", "a", {"status": {"printableStatus": "ErrorPvcNotFound"}}
        )
        controller_api = Api(lambda: connection_info(kubeconfig))
        vms, _ = reconcilers(controller_api)
        objects = Objects()
        instance = its_instance()
        instance["metadata"].update(namespace="default")
        instance["metadata"]["ownerReferences"][0]["uid"] = stale["metadata"]["uid"]
        objects.vmis["a"] = instance
        memo: dict[str, Any] = {}
        _, writes = vms.plan(stale, objects, memo)
        assert writes is not None

        async def write() -> None:
            assert writes is not None
            await writes()
            await controller_api.close()

        asyncio.run(write())
        now = custom.get_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", "a")
        assert now["status"]["printableStatus"] == "Starting"
        assert memo["vm"]["metadata"]["resourceVersion"] == now["metadata"]["resourceVersion"]
