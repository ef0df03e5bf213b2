"""Where a node advertises ``devices.kubevirt.io/kvm`` (KubeVirt's device plugin), the launcher pod requests it
and probes KVM (``--accel auto``); where none does, it asks for TCG. The real controller process, the fake API
server, the node index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes

from core.wait import wait_until
from runtime.deploy import crd_paths
from tests.fakekube import FakeApiProcess

PROJECT = Path(__file__).resolve().parents[2]


def node(name: str, kvm: str | None) -> dict:
    allocatable = {"cpu": "8", "memory": "32Gi", "pods": "110"}
    if kvm is not None:
        allocatable["devices.kubevirt.io/kvm"] = kvm
    return {
        "metadata": {"name": name},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "allocatable": allocatable},
    }


def vm(name: str) -> dict:
    spec = {"domain": {"memory": {"guest": "128Mi"}, "devices": {}}, "networks": [{"name": "default", "pod": {}}]}
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"runStrategy": "Always", "template": {"spec": spec}},
    }


def test_launcher_pod_requests_kvm_where_a_node_offers_it(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    with FakeApiProcess(kubeconfig, crds=crd_paths()):
        client = kubernetes.config.new_client_from_config(str(kubeconfig))
        core = kubernetes.client.CoreV1Api(client)
        custom = kubernetes.client.CustomObjectsApi(client)
        core.create_node(node("plain", None), _preload_content=False)
        controller = subprocess.Popen(
            [sys.executable, "-m", "runtime.controller", "--kubeconfig", str(kubeconfig)],
            cwd=PROJECT,
            env={**os.environ, "PYTHONPATH": str(PROJECT)},
            stdout=(tmp_path / "controller.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:

            def pod_of(name: str) -> dict | None:
                pods = json.loads(core.list_namespaced_pod("default", _preload_content=False).data)["items"]
                return next((p for p in pods if p["metadata"]["labels"].get("kubevirt.io/domain") == name), None)

            custom.create_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", vm("tcg-only"))
            first = wait_until(lambda: pod_of("tcg-only"), timeout=60, interval=0.2)
            assert first, "the first launcher pod"
            container = first["spec"]["containers"][0]
            assert "devices.kubevirt.io/kvm" not in container["resources"]["requests"]
            assert container["command"][-2:] == ["--accel", "tcg"]

            core.create_node(node("kvm-node", "1k"), _preload_content=False)  # KubeVirt's device plugin: 1000
            custom.create_namespaced_custom_object("kubevirt.io", "v1", "default", "virtualmachines", vm("with-kvm"))
            second = wait_until(lambda: pod_of("with-kvm"), timeout=60, interval=0.2)
            assert second, "the second launcher pod"
            container = second["spec"]["containers"][0]
            assert container["resources"]["requests"]["devices.kubevirt.io/kvm"] == "1"
            assert container["resources"]["limits"] == {"devices.kubevirt.io/kvm": "1"}
            assert container["command"][-2:] == ["--accel", "auto"]
        finally:
            controller.terminate()
            controller.wait(30)
