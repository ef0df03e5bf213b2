"""The cluster target's final steps against the fake API server, over real HTTP, through the real client.

Transfer is `convert --apply` (its volume filling needs a real cluster: tests/convert/test_apply.py);
here the VirtualMachine is applied as convert applies it, and the test plays KubeVirt's controller
(creating/deleting the VirtualMachineInstance and its status) where a real cluster would.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from converters.specs import SpecOptions, vm_manifests
from core.errors import TargetError
from migrator.convert import cluster
from migrator.cutover.ports import TargetStop, Verification
from migrator.cutover.targets import DiskOrigin
from migrator.cutover.targets.cluster import ClusterTarget
from tests.convert.test_apply import crd
from tests.fakekube import FakeApiServer
from tests.specs.builders import plan_of, planned

CRDS = [
    crd("kubevirt.io", "v1", "VirtualMachine", "virtualmachines"),
    crd("kubevirt.io", "v1", "VirtualMachineInstance", "virtualmachineinstances"),
    crd("cdi.kubevirt.io", "v1beta1", "DataVolume", "datavolumes"),
]


def _vmi(target: ClusterTarget, name: str) -> Any:
    return cluster.api_resource(target.client, {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance"})


def test_start_wait_verify_stop_and_preflight(tmp_path: Path) -> None:
    p = planned()
    plan = plan_of(p)
    plan.target_namespace = "default"
    manifests = vm_manifests(p, plan, SpecOptions())
    with FakeApiServer(crds=CRDS) as api:
        kubeconfig = str(api.kubeconfig(tmp_path / "kubeconfig"))
        target = ClusterTarget(kubeconfig, "default", DiskOrigin())
        target.preflight(plan, p)  # nothing there yet
        with pytest.raises(TargetError, match="--verify-port"):
            target.check_verification(Verification(marker="READY"))

        cluster.server_side_apply(target.client, manifests.virtual_machine)  # what the transfer's apply leaves
        target.preflight(plan, p)  # ours, not running: fine
        target.start(plan, p, run=True)
        [vm] = api.objects("virtualmachines.kubevirt.io", "default")
        assert vm["spec"]["runStrategy"] == "Always"

        # KubeVirt's controller: the instance appears, then runs with an address
        vmi = _vmi(target, p.target_name)
        body = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance"}
        body["metadata"] = {"name": p.target_name, "namespace": "default"}
        vmi.create(body=body, namespace="default")
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def run_it() -> None:
            time.sleep(1.0)
            status = {"phase": "Running", "interfaces": [{"name": "default", "ipAddress": "127.0.0.1"}]}
            objects = kubernetes.client.CustomObjectsApi(target.client.client)
            objects.patch_namespaced_custom_object_status(
                "kubevirt.io", "v1", "default", "virtualmachineinstances", p.target_name, {"status": status}
            )

        threading.Thread(target=run_it).start()
        target.wait_running(p, timeout=30)
        target.verify(p, Verification(tcp_port=port, timeout=10))
        listener.close()
        with pytest.raises(TargetError, match="did not accept connections"):
            target.verify(p, Verification(tcp_port=port, timeout=1))
        with pytest.raises(TargetError, match="is running"):
            target.preflight(plan, p)

        threading.Timer(1.0, lambda: vmi.delete(name=p.target_name, namespace="default")).start()
        assert target.stop(p, grace=30) == TargetStop(True, f"target {p.target_name} stopped (runStrategy Halted)")
        [vm] = api.objects("virtualmachines.kubevirt.io", "default")
        assert vm["spec"]["runStrategy"] == "Halted"

        # an instance that outlives the grace period (a guest ignoring the shutdown) is deleted at once
        vmi.create(body=body, namespace="default")
        started = time.monotonic()
        stopped = target.stop(p, grace=1)
        assert stopped == TargetStop(
            True, f"target {p.target_name} stopped: its instance deleted after the 1s grace period"
        )
        assert time.monotonic() - started < 15

        # one that cannot be deleted (a finalizer nobody removes) is never reported stopped
        body["metadata"]["finalizers"] = ["test.example/never"]
        vmi.create(body=body, namespace="default")
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("migrator.cutover.targets.cluster.DESTROY_WAIT", 2.0)
            stuck = target.stop(p, grace=1)
        assert not stuck.confirmed and "still exists" in stuck.detail

        other = planned()
        other.source_name = "someone-else"
        with pytest.raises(TargetError, match="not this VM's"):
            target.preflight(plan, other)
