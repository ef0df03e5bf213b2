"""The controller keeps nothing per object once the object is gone: 5,000 VirtualMachines created and deleted
through it (5 rounds of 1,000, each round through to its instances and pods and back to nothing), and its RSS
after the last round is within 10 % of what it was after the first.

The real controller process against the fake API server process (with its scheduler); the test plays the
kubelet's part in deletion: it removes the launcher pods the controller deleted. Slow (several minutes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from core.wait import wait_until
from runtime.deploy import crd_paths
from tests.fakekube import FakeApiProcess

PROJECT = Path(__file__).resolve().parents[2]
NAMESPACE = "memory"
ROUNDS = 5
PER_ROUND = 1000

pytestmark = pytest.mark.slow


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def vm(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "runStrategy": "Always",
            "template": {
                "spec": {
                    "domain": {"memory": {"guest": "128Mi"}, "devices": {}},
                    "networks": [{"name": "default", "pod": {}}],
                }
            },
        },
    }


def items(response: Any) -> list[dict[str, Any]]:
    return json.loads(response.data)["items"]


def test_rss_stays_flat_over_5000_vms_created_and_deleted(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    with FakeApiProcess(kubeconfig, crds=crd_paths(), scheduler=True):
        client = kubernetes.config.new_client_from_config(str(kubeconfig))
        core = kubernetes.client.CoreV1Api(client)
        custom = kubernetes.client.CustomObjectsApi(client)
        core.create_namespace({"metadata": {"name": NAMESPACE}}, _preload_content=False)
        node = {
            "metadata": {"name": "node-1"},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "allocatable": {"cpu": "512", "memory": "16Ti", "pods": "10000"},
            },
        }
        core.create_node(node, _preload_content=False)
        log = (tmp_path / "controller.log").open("wb")
        controller = subprocess.Popen(
            [sys.executable, "-m", "runtime.controller", "--kubeconfig", str(kubeconfig)],
            cwd=PROJECT,
            env={**os.environ, "PYTHONPATH": str(PROJECT)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def listing(plural: str) -> list[dict[str, Any]]:
            if plural == "pods":
                return items(core.list_namespaced_pod(NAMESPACE, _preload_content=False))
            return items(
                custom.list_namespaced_custom_object("kubevirt.io", "v1", NAMESPACE, plural, _preload_content=False)
            )

        def one_round(first: int) -> None:
            names = [f"vm-{index:05d}" for index in range(first, first + PER_ROUND)]
            with ThreadPoolExecutor(4) as pool:
                list(
                    pool.map(
                        lambda n: custom.create_namespaced_custom_object(
                            "kubevirt.io", "v1", NAMESPACE, "virtualmachines", vm(n), _preload_content=False
                        ),
                        names,
                    )
                )

            def all_scheduled() -> bool:
                scheduled = [
                    v for v in listing("virtualmachineinstances") if v.get("status", {}).get("phase") == "Scheduled"
                ]
                return len(scheduled) == PER_ROUND and len(listing("pods")) == PER_ROUND

            assert wait_until(all_scheduled, timeout=600, interval=1.0), (
                f"{PER_ROUND} instances Scheduled with their pods"
            )
            with ThreadPoolExecutor(4) as pool:
                list(
                    pool.map(
                        lambda n: custom.delete_namespaced_custom_object(
                            "kubevirt.io", "v1", NAMESPACE, "virtualmachines", n, _preload_content=False
                        ),
                        names,
                    )
                )

            def all_gone() -> bool:
                pods = listing("pods")
                for pod in pods:  # the kubelet's part: a pod the controller deleted goes once its launcher stopped
                    if pod["metadata"].get("deletionTimestamp"):
                        core.delete_namespaced_pod(
                            pod["metadata"]["name"], NAMESPACE, grace_period_seconds=0, _preload_content=False
                        )
                return not pods and not listing("virtualmachineinstances") and not listing("virtualmachines")

            assert wait_until(all_gone, timeout=600, interval=1.0), f"{PER_ROUND} VMs, instances and pods gone"

        try:
            one_round(0)
            time.sleep(2.0)  # the last events settle
            after_first = rss_kib(controller.pid)
            for round_number in range(1, ROUNDS):
                one_round(round_number * PER_ROUND)
            time.sleep(2.0)
            at_end = rss_kib(controller.pid)
            assert controller.poll() is None, (tmp_path / "controller.log").read_text()[-3000:]
        finally:
            controller.terminate()
            try:
                controller.wait(30)
            except subprocess.TimeoutExpired:
                controller.kill()
    assert at_end <= after_first * 1.10, f"RSS grew from {after_first} KiB to {at_end} KiB over {ROUNDS} rounds"
