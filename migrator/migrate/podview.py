"""``--progress pod``: where the VM stands, written onto this process's own Pod for the Migration controller.

In a Migration's Job, the pod's name and namespace come from the downward API (``POD_NAME``,
``POD_NAMESPACE``). Each step change and each progress tick (at most one per second) sets the
annotation ``migrator.io/progress`` to ``{"vm", "phase", "step", "steps": [{"name", "phase",
"progress": {"completed", "total"}, "error"}], "error"}``, the shape of Forklift's per-VM pipeline;
the controller copies it into the Migration's status. Lines also go to stdout (the pod's log). When
the controller sets ``migrator.io/cancel: "true"`` on the pod, its VMs are cancelled (rolled back
at their next safe point) as `migrator cancel` does on one machine.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from core.errors import InputError
from migrator.cutover.state import default_state_dir
from migrator.cutover.steps import CUTOVER_STEPS
from migrator.migrate import cancel
from migrator.migrate.progress import PlainView, VmProgress
from migrator.migrate.selection import Skip
from migrator.migrate.summary import Outcome

ANNOTATION = "migrator.io/progress"
CANCEL_ANNOTATION = "migrator.io/cancel"  # set by the Migration controller: roll this pod's VMs back
INTERVAL = 1.0
_PHASES = {"started": "Running", "done": "Completed", "failed": "Failed"}


class PodView(PlainView):
    def __init__(self) -> None:
        super().__init__()
        name, namespace = os.environ.get("POD_NAME"), os.environ.get("POD_NAMESPACE")
        if not name or not namespace:
            raise InputError("--progress pod needs POD_NAME and POD_NAMESPACE (the downward API) in the environment")
        from kubernetes import client, config

        if os.environ.get("KUBECONFIG") or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            api = config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))
        else:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            api = client.ApiClient(configuration)
        self.core = client.CoreV1Api(api)
        self.pod, self.namespace = name, namespace
        self.state: dict[str, dict[str, Any]] = {}  # vm -> its progress document
        self.guard = threading.Lock()
        self.last = 0.0

    def _doc(self, vm: str) -> dict[str, Any]:
        return self.state.setdefault(
            vm,
            {
                "vm": vm,
                "phase": "Running",
                "step": None,
                "steps": [{"name": s.name, "phase": "Pending"} for s in CUTOVER_STEPS],
                "error": None,
            },
        )

    def _publish(self, vm: str) -> None:
        with self.guard:
            body = json.dumps(self._doc(vm), sort_keys=True)
            self.last = time.monotonic()
        patch = {"metadata": {"annotations": {ANNOTATION: body}}}
        try:
            self.core.patch_namespaced_pod(self.pod, self.namespace, patch, _preload_content=False)
        except Exception as error:  # the migration goes on; the controller sees the pod's end anyway
            self._write(f"{vm}: cannot report progress on pod {self.pod}: {type(error).__name__}")

    def skipped(self, skip: Skip) -> None:
        super().skipped(skip)
        with self.guard:
            doc = self._doc(skip.vm)
            doc.update(phase="Skipped", error=skip.reason)
        self._publish(skip.vm)

    def step(self, vm: str, step: str, status: str, detail: str | None = None) -> None:
        super().step(vm, step, status, detail)
        with self.guard:
            doc = self._doc(vm)
            doc["step"] = step
            for entry in doc["steps"]:
                if entry["name"] == step:
                    entry["phase"] = _PHASES.get(status, status)
                    if status == "failed":
                        entry["error"] = detail
        self._publish(vm)

    def _cancel_requested(self) -> bool:
        try:
            pod = self.core.read_namespaced_pod(self.pod, self.namespace)
        except Exception:  # the API unreachable for a moment: asked again at the next tick
            return False
        return (pod.metadata.annotations or {}).get(CANCEL_ANNOTATION) == "true"

    def tick(self, in_flight: Sequence[VmProgress]) -> None:
        if in_flight and self._cancel_requested():
            for p in in_flight:
                cancel.request(default_state_dir(), p.vm)  # the worker rolls it back at its next safe point
        if time.monotonic() - self.last < INTERVAL:
            return
        for p in in_flight:
            with self.guard:
                doc = self._doc(p.vm)
                for entry in doc["steps"]:
                    if entry["name"] == "transfer":
                        entry["progress"] = {"completed": p.bytes_done, "total": p.bytes_total}
            self._publish(p.vm)

    def finished(self, outcome: Outcome) -> None:
        super().finished(outcome)
        phases = {"migrated": "Succeeded", "already migrated": "Succeeded", "cancelled": "Canceled"}
        with self.guard:
            doc = self._doc(outcome.vm)
            doc.update(phase=phases.get(outcome.outcome, "Failed"), error=outcome.error)
            doc["downtime_seconds"] = outcome.downtime_seconds
            for entry in doc["steps"]:
                if entry["name"] == "transfer" and outcome.bytes_moved:
                    entry["progress"] = {"completed": outcome.bytes_moved, "total": outcome.bytes_moved}
        self._publish(outcome.vm)
