"""The in-cluster runtime on the fake API server: real controller and handler processes, the test kubelet.

Used by ``test_cluster*.py`` (not a test module itself).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kubernetes

from core.wait import wait_until
from runtime.controller.names import SOCKETS_DIR, state_dir_name
from runtime.deploy import crd_paths
from tests.fakekube import FakeApiServer
from tests.runtime.kubelet import TestKubelet

PROJECT = Path(__file__).resolve().parents[2]


def spawn_module(args: list[str], log_path: Path, **env: str) -> subprocess.Popen[bytes]:
    """``python -m ARGS`` run from the project (an agent: controller, handler), its output appended to log_path."""
    log = open(log_path, "ab")  # the process keeps it open
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=PROJECT,
        env={**os.environ, "PYTHONPATH": str(PROJECT), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


CRDS = crd_paths()
NODE = "node-1"
SOCKETS = "s"  # the sockets hostPath, short: unix socket paths are limited to 108 bytes


class Cluster:
    def __init__(self, api: FakeApiServer, kubeconfig: Path, root: Path, logs: Path) -> None:
        self.api, self.kubeconfig, self.root, self.logs = api, kubeconfig, root, logs
        client = kubernetes.config.new_client_from_config(str(kubeconfig))
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.controller: subprocess.Popen[bytes] | None = None
        self.handler: subprocess.Popen[bytes] | None = None
        self.kubelet: TestKubelet | None = None
        self.volumes = root / "pv"
        self.volumes.mkdir()

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        return spawn_module(args, self.logs / f"{name}.log", MIGRATOR_BACKOFF_BASE="1")

    def start_controller(self) -> None:
        self.controller = self._spawn("controller", ["runtime.controller", "--kubeconfig", str(self.kubeconfig)])

    def kill_controller(self) -> None:
        assert self.controller is not None
        self.controller.send_signal(signal.SIGKILL)
        self.controller.wait()

    def start_handler(self) -> None:
        self.handler = self._spawn(
            "handler",
            [
                "runtime.handler",
                "--node",
                NODE,
                "--sockets-dir",
                str(self.root / SOCKETS),
                "--kubeconfig",
                str(self.kubeconfig),
                "--interval",
                "0.5",
            ],
        )

    def start_kubelet(self) -> TestKubelet:
        self.kubelet = TestKubelet(
            self.kubeconfig,
            NODE,
            host_root=self.root,
            volumes_dir=self.volumes,
            host_paths={SOCKETS_DIR: self.root / SOCKETS},
        )
        self.kubelet.__enter__()
        return self.kubelet

    def start_runtime(self) -> None:
        """The controller, the node handler and the test kubelet, as a cluster node runs them."""
        self.start_controller()
        self.start_handler()
        self.start_kubelet()

    def add_disk(self, claim: str, image: Path, namespace: str = "default") -> None:
        (self.volumes / claim).mkdir()
        subprocess.run(["cp", "--sparse=always", str(image), str(self.volumes / claim / "disk.img")], check=True)
        self.add_pvc(claim, namespace)

    def add_pvc(self, claim: str, namespace: str = "default") -> None:
        pvc = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}},
        }
        self.core.create_namespaced_persistent_volume_claim(namespace, pvc, _preload_content=False)

    def vm(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        found = [o for o in self.api.objects("virtualmachines.kubevirt.io", namespace) if o["metadata"]["name"] == name]
        return found[0] if found else None

    def vmi(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        found = [
            o
            for o in self.api.objects("virtualmachineinstances.kubevirt.io", namespace)
            if o["metadata"]["name"] == name
        ]
        return found[0] if found else None

    def pods(self, namespace: str = "default") -> list[dict[str, Any]]:
        return self.api.objects("pods", namespace)

    def state_dir(self, vmi: dict[str, Any]) -> Path:
        meta = vmi["metadata"]
        return self.root / SOCKETS / state_dir_name(meta["namespace"], meta["name"], meta["uid"])

    def patch_vm(self, name: str, body: dict[str, Any], namespace: str = "default") -> None:
        self.custom.patch_namespaced_custom_object("kubevirt.io", "v1", namespace, "virtualmachines", name, body)

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
        def alive_and_checked() -> Any:
            value = check()
            if not value:
                self.assert_alive()
            return value

        value = wait_until(alive_and_checked, timeout=timeout, interval=0.2)
        if value:
            return value
        raise AssertionError(f"timed out waiting for {what}\n{self.diagnostics()}")

    def assert_alive(self) -> None:
        for name, process in (("controller", self.controller), ("handler", self.handler)):
            if process is not None and process.poll() is not None and process.returncode != -signal.SIGKILL:
                raise AssertionError(f"{name} exited with {process.returncode}\n{self.diagnostics()}")

    def diagnostics(self) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        for log in sorted((self.root / "pods").glob("*/container.log")):
            parts.append(f"--- {log}\n{log.read_text(errors='replace')[-2000:]}")
        vms = [(o["metadata"]["name"], o.get("status")) for o in self.api.objects("virtualmachines.kubevirt.io")]
        vmis = [
            (o["metadata"]["name"], o.get("status")) for o in self.api.objects("virtualmachineinstances.kubevirt.io")
        ]
        pods = [(o["metadata"]["name"], (o.get("status") or {}).get("phase")) for o in self.api.objects("pods")]
        parts.append(
            f"VMs {vms}\nVMIs {vmis}\npods {pods}\nkubelet errors {self.kubelet.errors if self.kubelet else []}"
        )
        return "\n".join(parts)

    def stop(self) -> None:
        for process in (self.controller, self.handler):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self.kubelet is not None:
            self.kubelet.__exit__(None, None, None)


@contextmanager
def cluster(logs: Path) -> Iterator[Cluster]:
    # Short paths: unix socket paths are limited to 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="h6c", dir="/tmp"))
    try:
        with FakeApiServer(crds=CRDS) as api:
            kubeconfig = api.kubeconfig(root / "kubeconfig")
            env = Cluster(api, kubeconfig, root, logs)
            try:
                yield env
            finally:
                env.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
