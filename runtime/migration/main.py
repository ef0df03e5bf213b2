"""The Migration controller: ``python -m runtime.migration [--kubeconfig F] [--namespace NS]`` (kopf).

Level-triggered: every event on a Migration, or on a Job or pod it owns (by label), and a timer
run one full reconcile of that Migration from fresh reads: read the plan (inline, or from its
ConfigMap), make sure the plan ConfigMap, the state PVC and the VMs' PVCs exist in the target
namespace, observe the VMs' Jobs and their pods, let ``decisions.decide`` say what to start or
stop, do it, and write the status. A controller killed at any point converges when started again.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from typing import Any

import kopf
import kubernetes
from kubernetes.client.exceptions import ApiException

from core import rate
from runtime.controller.kube import api_client, connection_info, require_credentials
from runtime.migration import decisions, jobs
from runtime.migration.plan import PlanError, PlanVM, select, vms_of
from runtime.operator import agent_parser, run_operator

log = logging.getLogger("runtime.migration")
RESYNC_SECONDS = 2.0


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _job_state(job: dict[str, Any]) -> str:
    status = job.get("status") or {}
    if status.get("succeeded"):
        return "succeeded"
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if status.get("failed") or conditions.get("Failed") == "True":
        return "failed"
    return "active"


def _why_failed(job: dict[str, Any], pod: dict[str, Any] | None, progress: dict[str, Any] | None) -> str:
    """One line: what the migration said (its error), else how the pod ended, else the Job's condition."""
    if progress and progress.get("error"):
        return str(progress["error"])
    if pod is not None:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            ended = (container.get("state") or {}).get("terminated")
            if ended:
                how = f"pod {pod['metadata']['name']} exited {ended.get('exitCode')}"
                return how + (f" ({ended['reason']})" if ended.get("reason") else "")
        phase = (pod.get("status") or {}).get("phase")
        if phase:
            return f"pod {pod['metadata']['name']} is {phase}"
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed":
            return f"Job {job['metadata']['name']} failed: {condition.get('reason')}: {condition.get('message', '')}"
    return f"Job {job['metadata']['name']} failed"


class MigrationReconciler:
    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.core = kubernetes.client.CoreV1Api(client)
        self.batch = kubernetes.client.BatchV1Api(client)
        self.rbac = kubernetes.client.RbacAuthorizationV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    # -- reads --------------------------------------------------------------------------------------
    def _plan(self, migration: dict[str, Any]) -> tuple[dict[str, Any], str]:
        plan = migration["spec"]["plan"]
        if "inline" in plan:
            return plan["inline"], json.dumps(plan["inline"], indent=1)
        ref = plan["configMapRef"]
        key = ref.get("key", "plan.yaml")
        try:
            cm = self.core.read_namespaced_config_map(ref["name"], migration["metadata"]["namespace"])
        except ApiException as error:
            if error.status == 404:
                raise PlanError(f"spec.plan.configMapRef: ConfigMap {ref['name']} not found") from None
            raise
        text = (cm.data or {}).get(key)
        if text is None:
            raise PlanError(f"spec.plan.configMapRef: ConfigMap {ref['name']} has no key {key}")
        import yaml

        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError:
            raise PlanError(f"spec.plan.configMapRef: {ref['name']}/{key} is not YAML") from None
        return document, text

    def _list(self, fn: Any, namespace: str, name: str) -> list[dict[str, Any]]:
        raw = fn(namespace, label_selector=f"{jobs.LABEL_MIGRATION}={name}", _preload_content=False)
        items: list[dict[str, Any]] = json.loads(raw.data)["items"]
        return items

    def _ensure(self, create: Any, namespace: str, body: dict[str, Any]) -> None:
        try:
            create(namespace, body)
        except ApiException as error:
            if error.status != 409:
                raise

    # -- the reconcile ------------------------------------------------------------------------------
    def reconcile(self, migration: dict[str, Any]) -> dict[str, Any]:
        meta, spec = migration["metadata"], migration["spec"]
        target = spec.get("targetNamespace") or meta["namespace"]
        try:
            document, text = self._plan(migration)
            vms = select(vms_of(document), spec.get("vms") or [])
        except PlanError as error:
            return {"phase": "Failed", "error": str(error), "vms": []}
        self._ensure(self.core.create_namespaced_config_map, target, jobs.plan_configmap(migration, text, target))
        self._ensure(self.core.create_namespaced_persistent_volume_claim, target, jobs.state_pvc(migration, target))
        self._ensure(self.core.create_namespaced_service_account, target, jobs.service_account(migration, target))
        self._ensure(self.rbac.create_namespaced_role_binding, target, jobs.role_binding(migration, target))
        job_objects = self._list(self.batch.list_namespaced_job, target, meta["name"])
        pods = self._list(self.core.list_namespaced_pod, target, meta["name"])
        by_name = {vm.name: vm for vm in vms}
        views = [self._view(job, pods) for job in job_objects]
        max_in_flight = int(spec.get("maxInFlight") or 4)
        chosen = decisions.Spec(
            max_in_flight=max_in_flight,
            backoff_limit=int(spec.get("backoffLimit", 2)),
            cutover=_parse_time(spec.get("cutover")),
            cancel=frozenset(spec.get("cancel") or []),
            warm=spec.get("type") == "warm",
        )
        decision = decisions.decide(vms, [v for v in views if v.vm in by_name], chosen, datetime.now(UTC))
        per_job = self._per_job_rate(spec.get("maxRate"), max_in_flight)
        for name in decision.cancel:
            for pod in pods:
                if (pod["metadata"].get("labels") or {}).get("job-name") == name:
                    patch = {"metadata": {"annotations": {jobs.CANCEL_ANNOTATION: "true"}}}
                    try:
                        self.core.patch_namespaced_pod(pod["metadata"]["name"], target, patch)
                    except ApiException as error:
                        if error.status != 404:
                            raise
        for start in decision.start:
            self._start(migration, start.vm, start, target, per_job)
        return decision.status

    @staticmethod
    def _per_job_rate(max_rate: str | None, max_in_flight: int) -> str | None:
        """One Job per VM, each its own process: the run's rate is shared out evenly among the slots."""
        if not max_rate:
            return None
        try:
            return rate.format_rate(rate.parse_rate(max_rate) / max_in_flight)
        except ValueError:
            return None

    def _start(
        self, migration: dict[str, Any], vm: PlanVM, start: decisions.Start, target: str, per_job: str | None
    ) -> None:
        for claim in jobs.disk_pvcs(migration, vm, target):
            self._ensure(self.core.create_namespaced_persistent_volume_claim, target, claim)
        body = jobs.job(migration, vm, start, namespace=target, max_rate=per_job)
        self._ensure(self.batch.create_namespaced_job, target, body)
        log.info("Migration %s: started Job %s", migration["metadata"]["name"], body["metadata"]["name"])

    @staticmethod
    def _view(job: dict[str, Any], pods: list[dict[str, Any]]) -> decisions.JobView:
        meta = job["metadata"]
        labels = meta.get("labels") or {}
        mine = [
            p
            for p in pods
            if any(ref.get("uid") == meta.get("uid") for ref in p["metadata"].get("ownerReferences") or [])
            or (p["metadata"].get("labels") or {}).get("job-name") == meta["name"]
        ]
        pod = max(mine, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)
        progress = None
        if pod is not None:
            raw = (pod["metadata"].get("annotations") or {}).get(jobs.PROGRESS)
            try:
                progress = json.loads(raw) if raw else None
            except ValueError:
                progress = None
        state = _job_state(job)
        status = job.get("status") or {}
        return decisions.JobView(
            vm=(meta.get("annotations") or {}).get(jobs.ANNOTATION_VM, ""),
            name=meta["name"],
            purpose=labels.get(jobs.LABEL_PURPOSE, decisions.MIGRATE),
            attempt=int(labels.get(jobs.LABEL_ATTEMPT, "1")),
            state=state,
            reason=_why_failed(job, pod, progress) if state == "failed" else None,
            progress=progress,
            started=status.get("startTime"),
            finished=status.get("completionTime"),
        )

    def write_status(self, migration: dict[str, Any], status: dict[str, Any]) -> None:
        meta = migration["metadata"]
        current = migration.get("status") or {}
        if all(current.get(key) == status.get(key) for key in ("vms", "phase", "conditions")):
            return
        self.custom.patch_namespaced_custom_object_status(
            jobs.GROUP, jobs.VERSION, meta["namespace"], jobs.PLURAL, meta["name"], {"status": status}
        )


class Controller:
    """One reconcile of a Migration at a time (a lock each); events and a resync thread call ``run``."""

    def __init__(self, kubeconfig: str | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.reconciler = MigrationReconciler(api_client(kubeconfig))
        self.stopping = threading.Event()

    def run(self, namespace: str, name: str) -> None:
        reconciler = self.reconciler
        with reconciler.lock(namespace, name):
            try:
                migration = reconciler.custom.get_namespaced_custom_object(
                    jobs.GROUP, jobs.VERSION, namespace, jobs.PLURAL, name
                )
            except ApiException as error:
                if error.status == 404:
                    return
                raise
            status = reconciler.reconcile(migration)
            reconciler.write_status(migration, status)

    def resync(self) -> None:
        """What no event announces (time passing: a cutover time reached) happens within RESYNC_SECONDS."""
        while not self.stopping.wait(RESYNC_SECONDS):
            try:
                listing = self.reconciler.custom.list_cluster_custom_object(jobs.GROUP, jobs.VERSION, jobs.PLURAL)
                for item in listing.get("items") or []:
                    self.run(item["metadata"]["namespace"], item["metadata"]["name"])
            except Exception:
                log.exception("resync failed; the next one retries")


def register(controller: Controller, registry: kopf.OperatorRegistry | None = None) -> kopf.OperatorRegistry:
    registry = registry or kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        settings.execution.max_workers = 4
        settings.watching.server_timeout = 300
        threading.Thread(target=controller.resync, daemon=True).start()

    @kopf.on.cleanup(registry=registry)
    def stop(**_: Any) -> None:
        controller.stopping.set()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(controller.kubeconfig)

    @kopf.on.event(jobs.GROUP, jobs.VERSION, jobs.PLURAL, registry=registry)
    def migration_event(namespace: str, name: str, type: str | None, **_: Any) -> None:
        if type != "DELETED":
            controller.run(namespace, name)

    def owned(labels: kopf.Labels, **_: Any) -> bool:
        return jobs.LABEL_MIGRATION in labels and jobs.LABEL_MIGRATION_NAMESPACE in labels

    @kopf.on.event("batch", "v1", "jobs", when=owned, registry=registry)
    @kopf.on.event("", "v1", "pods", when=owned, registry=registry)
    def owned_event(labels: kopf.Labels, **_: Any) -> None:
        controller.run(labels[jobs.LABEL_MIGRATION_NAMESPACE], labels[jobs.LABEL_MIGRATION])

    return registry


def main(argv: list[str] | None = None) -> None:
    parser = agent_parser("python -m runtime.migration", "The Migration controller.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    require_credentials(args.kubeconfig)
    run_operator(register(Controller(args.kubeconfig)), args.namespace)
