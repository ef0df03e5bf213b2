"""kopf registration of the controller: ``python -m runtime.controller [--kubeconfig F] [--namespace NS]``.

Every watched event (VirtualMachine, VirtualMachineInstance, launcher Pod) triggers a full
reconcile of the objects it concerns, from fresh reads: the handlers are level-triggered and keep no
state but a requeue timer (backoffs, missing PVCs) and a periodic resync, so a controller killed at any
point and started again converges (kopf's initial listing replays every object).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import kopf

from runtime.controller.kube import api_client, connection_info, retry_conflicts
from runtime.controller.names import GROUP, LABEL_APP, LABEL_DOMAIN, VERSION, VMIS, VMS
from runtime.controller.vm import VmReconciler
from runtime.controller.vmi import VmiReconciler

log = logging.getLogger("runtime.controller")
RESYNC_SECONDS = 60.0


class Cache:
    """The latest copy of each instance and launcher pod the watches delivered (newest resourceVersion
    wins). Reads fall back to the API on a miss; a stale hit is harmless: every write carries a
    resourceVersion or uid precondition, and the next event reconciles again."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._guard = threading.Lock()

    def put(self, kind: str, obj: dict[str, Any], deleted: bool = False) -> None:
        meta = obj.get("metadata") or {}
        key = (kind, meta.get("namespace", ""), meta.get("name", ""))
        with self._guard:
            old = self._objects.get(key)
            if deleted:
                if old is not None and (old.get("metadata") or {}).get("uid") == meta.get("uid"):
                    del self._objects[key]
                return
            if old is None or _rv(old) <= _rv(obj) or (old.get("metadata") or {}).get("uid") != meta.get("uid"):
                self._objects[key] = obj

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._guard:
            return self._objects.get((kind, namespace, name))


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class Controller:
    """The two reconcilers with one lock per object, so that concurrent events on one object serialize."""

    def __init__(self, kubeconfig: str | None = None, image: str | None = None) -> None:
        self.kubeconfig = kubeconfig
        client = api_client(kubeconfig)
        self.cache = Cache()
        self.vms = VmReconciler(client, cache=self.cache)
        self.vmis = VmiReconciler(client, image=image, cache=self.cache)
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        self._timers: dict[tuple[str, str, str], threading.Timer] = {}
        self.stopping = threading.Event()

    def _lock(self, key: tuple[str, str, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _run(
        self,
        kind: str,
        namespace: str,
        name: str,
        fn: Callable[[str, str, dict[str, Any] | None], float | None],
        body: dict[str, Any] | None = None,
    ) -> None:
        key = (kind, namespace, name)
        given = [body]

        def attempt() -> float | None:
            obj, given[0] = given[0], None  # the event's copy once; after a 409, fresh reads
            return fn(namespace, name, obj)

        with self._lock(key):
            requeue = retry_conflicts(attempt, what=f"{kind} {namespace}/{name}")
        if requeue is not None:
            self._requeue(key, requeue)

    def _requeue(self, key: tuple[str, str, str], delay: float) -> None:
        with self._guard:
            if key in self._timers and self._timers[key].is_alive():
                return
            timer = threading.Timer(max(delay, 0.05), self._safe, args=key)
            timer.daemon = True
            self._timers[key] = timer
            timer.start()

    def _safe(self, kind: str, namespace: str, name: str) -> None:
        try:
            if kind == VMS:
                self.vm(namespace, name)
            else:
                self.vmi(namespace, name)
        except Exception:  # a timer thread has nobody to raise to: log; the next event or resync retries
            log.exception("reconcile of %s %s/%s failed", kind, namespace, name)

    def vm(self, namespace: str, name: str, body: dict[str, Any] | None = None) -> None:
        self._run(VMS, namespace, name, self.vms.reconcile, body)

    def vmi(self, namespace: str, name: str, body: dict[str, Any] | None = None) -> None:
        self._run(VMIS, namespace, name, self.vmis.reconcile, body)

    def resync(self, stop: threading.Event) -> None:
        """Every RESYNC_SECONDS, reconcile every VM (one list): what no event announces (time passing) happens."""
        while not stop.wait(RESYNC_SECONDS):
            try:
                listing = self.vms.custom.list_cluster_custom_object(GROUP, VERSION, VMS)
                for item in listing.get("items") or []:
                    self.vm(item["metadata"]["namespace"], item["metadata"]["name"], item)
            except Exception:
                log.exception("resync failed; the next one retries")


def register(controller: Controller, registry: kopf.OperatorRegistry | None = None) -> kopf.OperatorRegistry:
    """Register the handlers on ``registry`` (a fresh one by default: several operators may share a process)."""
    registry = registry or kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        settings.execution.max_workers = 8
        settings.watching.server_timeout = 300
        settings.persistence.finalizer = "migrator.io/kopf-finalizer"

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(controller.kubeconfig)

    @kopf.on.startup(registry=registry)
    def start_resync(**_: Any) -> None:
        threading.Thread(target=controller.resync, args=(controller.stopping,), daemon=True).start()

    @kopf.on.cleanup(registry=registry)
    def stop_resync(**_: Any) -> None:
        controller.stopping.set()

    @kopf.on.event(GROUP, VERSION, VMS, registry=registry)
    def vm_event(namespace: str, name: str, type: str | None, event: kopf.RawEvent, **_: Any) -> None:
        if type != "DELETED":
            controller.vm(namespace, name, event.get("object"))

    @kopf.on.event(GROUP, VERSION, VMIS, registry=registry)
    def vmi_event(namespace: str, name: str, type: str | None, body: kopf.Body, event: kopf.RawEvent, **_: Any) -> None:
        if event.get("object"):
            controller.cache.put(VMIS, event["object"], deleted=type == "DELETED")
        if type != "DELETED":
            controller.vmi(namespace, name, event.get("object"))
        for ref in body.get("metadata", {}).get("ownerReferences") or []:
            if ref.get("kind") == "VirtualMachine" and ref.get("controller"):
                controller.vm(namespace, ref["name"])

    @kopf.on.event("", "v1", "pods", labels={LABEL_APP: "virt-launcher"}, registry=registry)
    def pod_event(namespace: str, labels: kopf.Labels, type: str | None, event: kopf.RawEvent, **_: Any) -> None:
        if event.get("object"):
            controller.cache.put("pods", event["object"], deleted=type == "DELETED")
        if labels.get(LABEL_DOMAIN):
            controller.vmi(namespace, labels[LABEL_DOMAIN])

    return registry


def run(
    kubeconfig: str | None = None, namespace: str | None = None, *, stop_flag: Any = None, ready_flag: Any = None
) -> None:
    controller = Controller(kubeconfig)
    registry = register(controller)
    namespaces = [namespace] if namespace else None
    asyncio.run(
        kopf.operator(
            registry=registry,
            clusterwide=namespaces is None,
            namespaces=namespaces or [],
            standalone=True,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runtime.controller", description="The runtime's controller.")
    parser.add_argument("--kubeconfig", help="default: in-cluster service account, else $KUBECONFIG")
    parser.add_argument("--namespace", help="watch one namespace (default: all)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    run(args.kubeconfig, args.namespace)


if __name__ == "__main__":
    main()
