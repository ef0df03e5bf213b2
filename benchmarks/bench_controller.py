"""`make bench-controller`: 1,000 VirtualMachines through the runtime's controller on the fake API server.

Ours: the fake API server in its own process (with its scheduler, binding pods to one Ready node; no
kubelet: launcher pods are not executed) and the real controller (``python -m runtime.controller``) in
another. Timed from the first VirtualMachine create until every VM has its instance (phase Scheduled,
nodeName set), its launcher pod (bound), and the VM reads ``printableStatus: Starting``. The API calls the
controller made are counted by the server (``request_count``) and printed per VM.

Peer: the API's own floor: the same objects (1,000 VMs, 1,000 instances, 1,000 pods) created through the
same client with no controller running, on a fresh server.

Medians of ``--repeat`` runs; the last line is ``BENCH controller ours=<s> peer=<s>``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes

from core.wait import wait_until
from runtime.controller.pods import launcher_pod
from runtime.deploy import crd_paths
from tests.fakekube import FakeApiProcess
from tests.runtime.cluster_env import spawn_module

PROJECT = Path(__file__).resolve().parents[1]
CRDS = crd_paths()
NAMESPACE = "bench"
CREATORS = 4  # client threads creating objects, in both runs
POLL = 0.2  # seconds between the server-side counts that tell a run has converged, in both runs


def vm(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "runStrategy": "Always",
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {
                    "domain": {
                        "cpu": {"cores": 1},
                        "memory": {"guest": "256Mi"},
                        "devices": {"disks": [], "interfaces": [{"name": "default", "masquerade": {}}]},
                    },
                    "networks": [{"name": "default", "pod": {}}],
                },
            },
        },
    }


def setup(api: FakeApiProcess, kubeconfig: Path) -> kubernetes.client.ApiClient:
    client = kubernetes.config.new_client_from_config(str(kubeconfig))
    core = kubernetes.client.CoreV1Api(client)
    core.create_namespace({"metadata": {"name": NAMESPACE}}, _preload_content=False)
    node = {
        "metadata": {"name": "node-1"},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "allocatable": {"cpu": "64", "memory": "1Ti", "pods": "5000"},
        },
    }
    core.create_node(node, _preload_content=False)
    return client


def create_all(fn: Any, count: int) -> None:
    with ThreadPoolExecutor(CREATORS) as pool:
        list(pool.map(fn, range(count)))


def done(api: FakeApiProcess, count: int) -> bool:
    """Every VM Starting, its instance Scheduled, its pod bound: counted by the server (a poll serializes
    nothing, so polling every POLL seconds takes next to no CPU from the run it measures)."""
    checks = [
        ("virtualmachines.kubevirt.io", "status.printableStatus", "Starting"),
        ("virtualmachineinstances.kubevirt.io", "status.phase", "Scheduled"),
        ("pods", "spec.nodeName", None),
    ]
    for resource, field, value in checks:
        total, matching = api.tally(resource, NAMESPACE, field, value)
        if total < count or matching < total:
            return False
    return True


def _rows(api: FakeApiProcess) -> dict[str, int]:
    rows = api._get("/fakekube/counts")["counts"]
    counts = {}
    for r in rows:
        sub = "/" + r["subresource"] if r["subresource"] else ""
        counts[f"{r['verb']} {r['resource']}{sub}"] = r["count"]
    return counts


def _cpu(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_ours(count: int, workdir: Path) -> tuple[float, float]:
    kubeconfig = workdir / "ours.kubeconfig"
    with FakeApiProcess(kubeconfig, crds=CRDS, scheduler=True) as api:
        client = setup(api, kubeconfig)
        custom = kubernetes.client.CustomObjectsApi(client)
        controller = spawn_module(["runtime.controller", "--kubeconfig", str(kubeconfig)], workdir / "controller.log")
        try:
            # Warm-up: the controller has listed and watches (one VM through to its pod), then the counts restart.
            custom.create_namespaced_custom_object(
                "kubevirt.io", "v1", "default", "virtualmachines", {**vm("warmup"), "metadata": {"name": "warmup"}}
            )
            not_started = f"controller did not start; see {workdir / 'controller.log'}"

            def warmed_up() -> bool:
                if controller.poll() is not None:
                    raise SystemExit(not_started)
                return bool(api.objects("pods", "default"))

            if not wait_until(warmed_up, timeout=60, interval=0.1):
                raise SystemExit(not_started)
            time.sleep(1.0)
            before = api.request_count()
            before_rows = _rows(api)
            cpu_before = _cpu(controller.pid), _cpu(api.pid)
            start = time.monotonic()
            create_all(
                lambda i: custom.create_namespaced_custom_object(
                    "kubevirt.io", "v1", NAMESPACE, "virtualmachines", vm(f"vm-{i:04d}"), _preload_content=False
                ),
                count,
            )

            def converged() -> bool:
                if controller.poll() is not None:
                    raise SystemExit(f"controller exited; see {workdir / 'controller.log'}")
                return done(api, count)

            if not wait_until(converged, timeout=600, interval=POLL):
                raise SystemExit("did not converge within 10 minutes")
            elapsed = time.monotonic() - start
            cpu = _cpu(controller.pid) - cpu_before[0], _cpu(api.pid) - cpu_before[1]
            print(f"CPU seconds while measured: controller {cpu[0]:.1f}, API server {cpu[1]:.1f}")
            calls = api.request_count() - before - count  # minus the bench's own creates
            after_rows = _rows(api)
            breakdown = {k: n - before_rows.get(k, 0) for k, n in after_rows.items() if n != before_rows.get(k, 0)}
            parts = [f"{k} {v / count:.2f}" for k, v in sorted(breakdown.items())]
            print("controller API calls per VM: " + ", ".join(parts))
            # The scheduler runs inside the server and makes no requests; a watch counts once.
            return elapsed, calls / count
        finally:
            controller.terminate()
            try:
                controller.wait(30)
            except subprocess.TimeoutExpired:
                print("controller did not stop within 30 s of SIGTERM; killed", file=sys.stderr)
                controller.kill()
                controller.wait()


def run_peer(count: int, workdir: Path) -> float:
    kubeconfig = workdir / "peer.kubeconfig"
    with FakeApiProcess(kubeconfig, crds=CRDS, scheduler=True) as api:
        client = setup(api, kubeconfig)
        custom = kubernetes.client.CustomObjectsApi(client)
        core = kubernetes.client.CoreV1Api(client)

        def one(i: int) -> None:
            name = f"vm-{i:04d}"
            created = custom.create_namespaced_custom_object(
                "kubevirt.io", "v1", NAMESPACE, "virtualmachines", vm(name)
            )
            body = vm(name)
            instance = {
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachineInstance",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": body["spec"]["template"]["spec"],
            }
            instance = custom.create_namespaced_custom_object(
                "kubevirt.io", "v1", NAMESPACE, "virtualmachineinstances", instance
            )
            core.create_namespaced_pod(NAMESPACE, launcher_pod(instance), _preload_content=False)
            del created

        start = time.monotonic()
        create_all(one, count)
        while api.tally("pods", NAMESPACE, "spec.nodeName")[1] < count:
            time.sleep(POLL)
        return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    ours, peer, calls = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-controller-") as tmp:
        for run in range(args.repeat):
            workdir = Path(tmp) / str(run)
            workdir.mkdir()
            seconds, per_vm = run_ours(args.count, workdir)
            ours.append(seconds)
            calls.append(per_vm)
            print(
                f"ours: {args.count} VMs → instances Scheduled, pods bound, VMs Starting in {seconds:.1f} s; "
                f"{per_vm:.1f} controller API calls per VM"
            )
            seconds = run_peer(args.count, workdir)
            peer.append(seconds)
            print(f"peer: {args.count} VMs + instances + pods created with no controller in {seconds:.1f} s")
    print(json.dumps({"count": args.count, "ours": ours, "peer": peer, "calls_per_vm": calls}))
    print(f"BENCH controller ours={statistics.median(ours):.2f} peer={statistics.median(peer):.2f}")


if __name__ == "__main__":
    main()
