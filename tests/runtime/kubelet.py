"""A test kubelet: runs the launcher pods bound to its node as local processes.

Plays the kubelet (and, with ``bind=True``, the scheduler) against the fake API server, through the
real client: registers a Ready Node; binds unscheduled launcher pods to itself (``pods/binding``); runs
the container's command as a local process — ``python3`` is this interpreter, each volume mount is
a local path (a PVC ``<claim>`` → ``<volumes_dir>/<claim>/``, which holds ``disk.img``; a hostPath
``P`` → ``host_paths[P]`` or ``<host_root>/P``), absolute paths in the arguments are mapped the same
way; reports the pod's status (Running with the process, then Succeeded/Failed with the exit code in
``containerStatuses``, and the termination message the container wrote at its ``terminationMessagePath``);
on deletion sends SIGTERM, then SIGKILL after the grace period, and removes the pod (grace 0).
``exec_target`` runs ``pods/exec`` commands the same way, in a running pod's environment
(``api.serve_exec(kubelet.node, kubelet.exec_target)``); a Block volume's device is a file, ``<claim>/disk.img``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from tests.fakekube.podexec import ExecTarget

PROJECT = Path(__file__).resolve().parents[2]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class LocalPod:
    namespace: str
    name: str
    uid: str
    process: subprocess.Popen[bytes] | None = None
    root: Path | None = None
    kill_at: float | None = None
    reported: str = ""
    exit_code: int | None = None
    log: list[str] = field(default_factory=list)
    container: str = "compute"
    termination_log: Path | None = None  # the container's terminationMessagePath, here
    fallback_to_logs: bool = False  # terminationMessagePolicy FallbackToLogsOnError
    mounts: dict[str, Path] = field(default_factory=dict)  # a path in the container → its local path
    env: dict[str, str] = field(default_factory=dict)


class TestKubelet:
    __test__ = False  # not a pytest class

    def __init__(
        self,
        kubeconfig: Path,
        node: str,
        *,
        host_root: Path,
        volumes_dir: Path,
        bind: bool = True,
        interval: float = 0.3,
        label_selector: str = "kubevirt.io=virt-launcher",
        host_paths: dict[str, Path] | None = None,
        pod_kubeconfig: Path | None = None,
    ) -> None:
        client = kubernetes.config.new_client_from_config(str(kubeconfig))
        self.core = kubernetes.client.CoreV1Api(client)
        self.node, self.host_root, self.volumes_dir = node, host_root, volumes_dir
        self.bind, self.interval, self.selector = bind, interval, label_selector
        self.pods: dict[str, LocalPod] = {}
        self.host_paths = host_paths or {}  # hostPath → local dir (else <host_root>/<path>)
        # The pods' API access (a service account's, in a cluster): $KUBECONFIG in their environment
        self.pod_kubeconfig = pod_kubeconfig
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"kubelet-{node}", daemon=True)
        self.errors: list[str] = []

    def __enter__(self) -> TestKubelet:
        self.register_node()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(10)
        for pod in self.pods.values():
            if pod.process and pod.process.poll() is None:
                pod.process.terminate()
                try:
                    pod.process.wait(30)
                except subprocess.TimeoutExpired:
                    pod.process.kill()
                    pod.process.wait()

    def register_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node, "labels": {"kubernetes.io/hostname": self.node}},
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": ""}],
                "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            },
        }
        try:
            self.core.create_node(node, _preload_content=False)
        except ApiException as error:
            if error.status != 409:
                raise

    def process_of(self, namespace: str, name: str) -> subprocess.Popen[bytes] | None:
        for pod in self.pods.values():
            if pod.namespace == namespace and pod.name == name:
                return pod.process
        return None

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.sync()
            except Exception as error:  # keep going; the test sees errors in self.errors
                self.errors.append(repr(error))
            self.stopping.wait(self.interval)

    def sync(self) -> None:
        raw = self.core.list_pod_for_all_namespaces(label_selector=self.selector, _preload_content=False)
        items = json.loads(raw.data)["items"]
        present = set()
        for pod in items:
            meta, spec = pod["metadata"], pod["spec"]
            present.add(meta["uid"])
            node = spec.get("nodeName")
            if not node:
                if self.bind and not meta.get("deletionTimestamp"):
                    self._bind(meta["namespace"], meta["name"])
                continue
            if node != self.node:
                continue
            local = self.pods.setdefault(meta["uid"], LocalPod(meta["namespace"], meta["name"], meta["uid"]))
            self._sync_pod(pod, local)
        for uid in [u for u in self.pods if u not in present]:
            local = self.pods[uid]
            if local.process and local.process.poll() is None:  # force-deleted: stop it now
                local.process.kill()
                local.process.wait()

    def _bind(self, namespace: str, name: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"kind": "Node", "name": self.node},
        }
        try:
            self.core.create_namespaced_pod_binding(name, namespace, body, _preload_content=False)
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    def _sync_pod(self, pod: dict[str, Any], local: LocalPod) -> None:
        meta = pod["metadata"]
        phase = (pod.get("status") or {}).get("phase")
        if meta.get("deletionTimestamp"):
            process = local.process
            if process is not None and process.poll() is None:
                if local.kill_at is None:
                    process.send_signal(signal.SIGTERM)
                    grace = meta.get("deletionGracePeriodSeconds") or 30
                    local.kill_at = time.monotonic() + float(grace)
                elif time.monotonic() > local.kill_at:
                    process.kill()
                return
            try:
                self.core.delete_namespaced_pod(
                    meta["name"], meta["namespace"], grace_period_seconds=0, _preload_content=False
                )
            except ApiException as error:
                if error.status != 404:
                    raise
            return
        if phase in ("Succeeded", "Failed"):
            return
        if local.process is None:
            local.process = self._start(pod, local)
            self._report(meta, "Running", {"running": {"startedAt": _now()}}, local.container)
            local.reported = "Running"
            return
        code = local.process.poll()
        if code is not None and local.reported == "Running":
            local.exit_code = code
            terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "finishedAt": _now()}
            message = self._termination_message(local, code)
            if message:
                terminated["message"] = message
            self._report(meta, "Succeeded" if code == 0 else "Failed", {"terminated": terminated}, local.container)
            local.reported = "done"

    @staticmethod
    def _termination_message(local: LocalPod, code: int) -> str:
        """As the kubelet: the file at terminationMessagePath (4096 bytes at most); with FallbackToLogsOnError, a
        failed container that wrote none gets the tail of its log (80 lines, 2048 bytes)."""
        text = ""
        if local.termination_log is not None and local.termination_log.is_file():
            text = local.termination_log.read_bytes()[:4096].decode(errors="replace")
        if not text and code != 0 and local.fallback_to_logs and local.root is not None:
            log = (local.root / "container.log").read_bytes().decode(errors="replace")
            text = "\n".join(log.splitlines()[-80:])[-2048:]
        return text

    def _report(self, meta: dict[str, Any], phase: str, state: dict[str, Any], container: str = "compute") -> None:
        status = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "containerStatuses": [
                {
                    "name": container,
                    "image": "localhost/migrator-runtime:latest",
                    "imageID": "",
                    "ready": phase == "Running",
                    "restartCount": 0,
                    "started": phase == "Running",
                    "state": state,
                }
            ],
        }
        self.core.patch_namespaced_pod_status(
            meta["name"], meta["namespace"], {"status": status}, _preload_content=False
        )

    def _env_value(self, pod: dict[str, Any], item: dict[str, Any]) -> str:
        """``value``, or ``valueFrom`` a Secret's key or the pod's own name/namespace (the downward API)."""
        source = item.get("valueFrom")
        if not source:
            return str(item.get("value", ""))
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = self.core.read_namespaced_secret(ref["name"], pod["metadata"]["namespace"])
            return base64.b64decode((secret.data or {})[ref["key"]]).decode()
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            return str(
                {"metadata.name": pod["metadata"]["name"], "metadata.namespace": pod["metadata"]["namespace"]}[path]
            )
        raise ValueError(f"test kubelet: unsupported valueFrom {source}")

    def _start(self, pod: dict[str, Any], local: LocalPod) -> subprocess.Popen[bytes]:
        spec = pod["spec"]
        container = spec["containers"][0]
        root = self.host_root / "pods" / local.uid[:8]
        root.mkdir(parents=True, exist_ok=True)
        local.root = root
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            if "hostPath" in volume:
                path = volume["hostPath"]["path"]
                host = self.host_paths.get(path) or self.host_root / path.lstrip("/")
                host.mkdir(parents=True, exist_ok=True)
            elif "persistentVolumeClaim" in volume:
                host = self.volumes_dir / volume["persistentVolumeClaim"]["claimName"]
                host.mkdir(parents=True, exist_ok=True)
            elif "configMap" in volume:
                host = root / "volumes" / mount["name"]
                host.mkdir(parents=True, exist_ok=True)
                config_map = self.core.read_namespaced_config_map(volume["configMap"]["name"], local.namespace)
                for key, value in (config_map.data or {}).items():
                    (host / key).write_text(value)
            else:
                host = root / "volumes" / mount["name"]
                host.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"].rstrip("/")] = host
            link = root / mount["mountPath"].lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(host)
        for device in container.get("volumeDevices") or []:  # a Block volume: a file stands for the device
            claim = volumes[device["name"]]["persistentVolumeClaim"]["claimName"]
            (self.volumes_dir / claim).mkdir(parents=True, exist_ok=True)
            mounts[device["devicePath"]] = self.volumes_dir / claim / "disk.img"
        local.mounts = mounts

        def local_path(arg: str) -> str:
            return _local_path(arg, mounts, root)

        local.container = container.get("name") or "compute"
        local.termination_log = Path(local_path(container.get("terminationMessagePath") or "/dev/termination-log"))
        local.termination_log.parent.mkdir(parents=True, exist_ok=True)
        local.fallback_to_logs = container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        command = _local_command([*(container.get("command") or []), *(container.get("args") or [])], mounts, root)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(PROJECT)
        if self.pod_kubeconfig is not None:
            env["KUBECONFIG"] = str(self.pod_kubeconfig)
        for item in container.get("env") or []:
            value = self._env_value(pod, item)
            env[item["name"]] = local_path(value) if value.startswith("/") else value
        local.env = env
        log = open(root / "container.log", "ab")  # the process keeps it open
        return subprocess.Popen(
            command, cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def exec_target(self, pod: dict[str, Any], container: str, command: list[str]) -> ExecTarget:
        """How this kubelet runs ``command`` in ``pod`` (``FakeApiServer.serve_exec``): in the pod's local
        environment, its paths mapped as the container's command (its volumes → their local directories)."""
        local = self.pods.get(pod["metadata"]["uid"])
        if local is None or local.root is None or local.process is None or local.process.poll() is not None:
            raise ValueError(f"container {container} of pod {pod['metadata']['name']} is not running on {self.node}")
        return ExecTarget(_local_command(command, local.mounts, local.root), cwd=str(PROJECT), env=dict(local.env))


def _local_path(arg: str, mounts: dict[str, Path], root: Path) -> str:
    """A container's absolute path on this machine: under a mount, in its local directory; else under the pod's root."""
    if not arg.startswith("/"):
        return arg
    for path in sorted(mounts, key=len, reverse=True):
        if arg == path or arg.startswith(path + "/"):
            return str(mounts[path]) + arg[len(path) :]
    return str(root / arg.lstrip("/"))


_SHELL_WORD_PATH = re.compile(r"(?<![\w./-])/[\w./-]+")


def _local_command(command: list[str], mounts: dict[str, Path], root: Path) -> list[str]:
    """The command with its container paths mapped; in a ``sh -c SCRIPT``, the mounted paths inside SCRIPT too
    (the system's own paths, /dev/null or /bin, stay as they are there)."""
    if not command:
        return command
    program = sys.executable if command[0] in ("python3", "python") else command[0]
    if program in ("sh", "bash", "/bin/sh", "/bin/bash") and len(command) >= 3 and command[1] == "-c":

        def mounted(match: re.Match[str]) -> str:
            path = match.group(0)
            if any(path == m or path.startswith(m + "/") for m in mounts):
                return shlex.quote(_local_path(path, mounts, root))
            return path

        rest = [_local_path(a, mounts, root) for a in command[3:]]
        return [program, "-c", _SHELL_WORD_PATH.sub(mounted, command[2]), *rest]
    return [program, *(_local_path(a, mounts, root) for a in command[1:])]
