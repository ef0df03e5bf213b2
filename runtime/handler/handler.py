"""The node handler's loop: watch this node's instances, ask each launcher, write instance status.

Least privilege: it lists/watches/gets VirtualMachineInstances (label ``kubevirt.io/nodeName=<node>``,
which the controller sets with ``status.nodeName``) and patches their status (no subresource, as in KubeVirt).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from core.errors import TargetError
from runtime.controller.kube import api_client
from runtime.controller.names import GROUP, LABEL_NODE, VERSION, VMIS, state_dir_name
from runtime.handler.sync import FINAL, pause_action, status_from_launcher
from runtime.launcher import api
from runtime.launcher.contract import ALIVE, RESULT_FILE
from runtime.launcher.contract import API_SOCKET as SOCKET

log = logging.getLogger("runtime.handler")


class Handler:
    def __init__(self, node: str, sockets_dir: Path, *, kubeconfig: str | None = None, interval: float = 1.0) -> None:
        self.node, self.sockets_dir, self.interval = node, sockets_dir, interval
        self.custom = kubernetes.client.CustomObjectsApi(api_client(kubeconfig))
        self.instances: dict[tuple[str, str], dict[str, Any]] = {}
        self._seen_alive: set[str] = set()  # uids whose launcher answered once
        self._shutdown_sent: set[str] = set()
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    # The watch: a local cache of this node's instances.
    def watch(self) -> None:
        selector = f"{LABEL_NODE}={self.node}"
        while not self.stopping.is_set():
            try:
                listing = self.custom.list_cluster_custom_object(GROUP, VERSION, VMIS, label_selector=selector)
                with self._lock:
                    self.instances = {_key(o): o for o in listing.get("items") or []}
                version = listing["metadata"]["resourceVersion"]
                stream = kubernetes.watch.Watch().stream(
                    self.custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    VMIS,
                    label_selector=selector,
                    resource_version=version,
                    timeout_seconds=60,
                    allow_watch_bookmarks=True,
                )
                for event in stream:
                    if self.stopping.is_set():
                        return
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        break  # 410 Gone and such: list again
                    if event["type"] == "BOOKMARK":
                        continue
                    with self._lock:
                        if event["type"] == "DELETED":
                            self.instances.pop(_key(obj), None)
                        else:
                            self.instances[_key(obj)] = obj
            except Exception as error:  # the API server restarts, the network blips: list again
                log.warning("watch failed (%s); listing again", error)
                self.stopping.wait(1.0)

    def run(self) -> None:
        threading.Thread(target=self.watch, name="vmi-watch", daemon=True).start()
        while not self.stopping.is_set():
            self.sync_all()
            self.stopping.wait(self.interval)

    def sync_all(self) -> None:
        with self._lock:
            instances = list(self.instances.values())
        for vmi in instances:
            try:
                self.sync(vmi)
            except ApiException as error:
                if error.status not in (404, 409):  # 409: changed meanwhile; the next round reads it fresh
                    log.warning("%s: %s", _key(vmi), error.reason)
            except Exception:
                log.exception("%s: sync failed", _key(vmi))
        self._clean_state_dirs(instances)

    def state_dir(self, vmi: dict[str, Any]) -> Path:
        meta = vmi["metadata"]
        return self.sockets_dir / state_dir_name(meta["namespace"], meta["name"], meta["uid"])

    def sync(self, vmi: dict[str, Any]) -> None:
        meta = vmi["metadata"]
        uid = meta["uid"]
        state = self.state_dir(vmi)
        launcher = _ask(state / SOCKET, "GET", "/status")
        if launcher is not None:
            self._seen_alive.add(uid)
        if meta.get("deletionTimestamp"):
            # Stop: the guest shuts down cleanly now; the kubelet stops the pod the controller deletes.
            if launcher is not None and launcher.get("phase") in ALIVE and uid not in self._shutdown_sent:
                log.info("%s: instance deleted: shutting the guest down", _key(vmi))
                _ask(state / SOCKET, "POST", "/shutdown")
                self._shutdown_sent.add(uid)
            return
        action = pause_action(vmi, launcher)
        if action:
            log.info("%s: %s", _key(vmi), action.lstrip("/"))
            launcher = _ask(state / SOCKET, "POST", action) or launcher
            launcher = _ask(state / SOCKET, "GET", "/status") or launcher
        result = _read_json(state / RESULT_FILE) if launcher is None else None
        phase = (vmi.get("status") or {}).get("phase")
        lost = launcher is None and result is None and (uid in self._seen_alive or phase == "Running")
        changes = status_from_launcher(vmi, launcher, result, lost)
        if not changes:
            return
        if changes.get("phase") in FINAL:
            log.info("%s: %s (%s)", _key(vmi), changes["phase"], changes.get("reason"))
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": changes}
        # The instance's status is no subresource (as in KubeVirt): the main resource takes it.
        updated = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], VMIS, meta["name"], body
        )
        with self._lock:
            key = _key(updated)
            if key in self.instances and int(self.instances[key]["metadata"]["resourceVersion"]) < int(
                updated["metadata"]["resourceVersion"]
            ):
                self.instances[key] = updated

    def _clean_state_dirs(self, instances: list[dict[str, Any]]) -> None:
        """Remove state dirs of finished launchers whose instance is gone from this node."""
        if not self.sockets_dir.is_dir():
            return
        known = {self.state_dir(v).name for v in instances}
        for path in self.sockets_dir.iterdir():
            if path.name not in known and (path / RESULT_FILE).exists() and not (path / SOCKET).exists():
                shutil.rmtree(path, ignore_errors=True)


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _ask(socket: Path, method: str, path: str) -> dict[str, Any] | None:
    if not socket.exists():
        return None
    try:
        return api.request(socket, method, path, timeout=5.0)
    except TargetError:
        return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return None
