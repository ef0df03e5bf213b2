"""The cluster target's guest conversion: a Job that mounts the VM's claims and runs ``python3 -m converters.guest``.

``conversion_job`` is the Job (pure): the project's image (it ships virt-v2v), each claim mounted at
``/var/run/migrator/volumes/<claim>/`` and its ``disk.img`` converted in place; the conversion's state and
overlays on the first claim, so a retried pod resumes or starts over (never from a half-converted image);
no service-account token and no credentials; ``backoffLimit`` 2 for pods that die, and a
``podFailurePolicy`` that fails the Job at once when the conversion itself is refused (exit 3: retrying gives
the same answer). ``run_conversion_job`` creates it (or adopts the one an earlier, interrupted run left),
waits for it with a deadline, reads the inspection (or the one-line reason) from the pod's termination
message, and deletes the Job and its pods. ``convert_in_job`` is what both cluster targets' convert-guest
step does with it (the cold cutover's after the transfer, the warm one's after the final delta): the Job,
the inspection recorded for `migrator status`, and the VirtualMachine applied again with virtio.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from converters.guest import GuestConversionError, Inspection
from converters.specs import vm_manifests
from core.errors import TargetError
from core.plan import Plan, PlannedVM
from migrator.convert import cluster as apply
from migrator.convert import guest
from migrator.convert.run import apply_work_dir, spec_options
from migrator.planning.rules.windows_virtio_drivers import is_windows

log = logging.getLogger(__name__)

VOLUMES_DIR = "/var/run/migrator/volumes"  # where a Migration's Job mounts the claims too
STATE_SUBDIR = ".migrator-guest"  # on the first claim: the conversion's state record and overlays
CONTAINER = "convert"
TERMINATION_LOG = "/dev/termination-log"  # the inspection (or the reason) for whoever reads the pod's status
PURPOSE_LABEL = "migrator.io/purpose"
PURPOSE = "convert-guest"
VM_LABEL = "migrator.io/vm"
SOURCE_ANNOTATION = "migrator.io/source-name"
IMAGE_ENV = "MIGRATOR_IMAGE"  # the project's image (default: the runtime's, which ships virt-v2v)
DEFAULT_IMAGE = "localhost/migrator-runtime:latest"
REFUSED = 3  # converters.guest.job.REFUSED: the conversion failed on its own terms
BAD_INPUT = 2
TIMEOUT = 3600.0  # seconds a conversion Job may take (TCG on a busy node: tens of minutes)
POLL = 2.0
API_ERRORS = 5  # consecutive failed reads of the Job before the wait gives up


@dataclass(frozen=True)
class Placement:
    """Where the Job runs and from what image: beside the pod that filled the claims, when there is one."""

    image: str = DEFAULT_IMAGE
    node: str | None = None  # a ReadWriteOnce claim mounted by a running pod can be mounted on its node only


def job_name(planned: PlannedVM) -> str:
    suffix = "-convert-guest"
    return planned.target_name[: 63 - len(suffix)].rstrip("-.") + suffix


def command(planned: PlannedVM, *, fresh: bool) -> list[str]:
    """The container's arguments after ``python3``: every disk and NIC as the source had them, no secrets."""
    claims = [d.claim_name for d in planned.disks]
    args = ["-m", "converters.guest", "--vm", planned.target_name]
    for claim, bus in zip(claims, guest.source_buses(planned), strict=True):
        args += ["--disk", f"{VOLUMES_DIR}/{claim}/disk.img", "--bus", bus]
    for nic in guest.guest_nics(planned):
        args += ["--nic", ",".join([nic.mac, nic.source_model, nic.old_name or ""]).rstrip(",")]
    args += ["--memory-mib", str(planned.vm.memory_mib), "--vcpus", str(planned.vm.cpu.vcpus)]
    args += ["--firmware", planned.vm.firmware.value, "--root", planned.guest_root or "first"]
    if is_windows(planned.vm):
        args.append("--windows")
    args += ["--state-dir", f"{VOLUMES_DIR}/{claims[0]}/{STATE_SUBDIR}", "--termination-log", TERMINATION_LOG]
    if fresh:
        args.append("--fresh")
    return args


def conversion_job(planned: PlannedVM, namespace: str, placement: Placement, *, fresh: bool) -> dict[str, Any]:
    labels = {PURPOSE_LABEL: PURPOSE, VM_LABEL: planned.target_name}
    annotations = {SOURCE_ANNOTATION: planned.source_name}
    mounts = [{"name": f"disk-{i}", "mountPath": f"{VOLUMES_DIR}/{d.claim_name}"} for i, d in enumerate(planned.disks)]
    volumes = [
        {"name": f"disk-{i}", "persistentVolumeClaim": {"claimName": d.claim_name}} for i, d in enumerate(planned.disks)
    ]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # the conversion needs no API access
        "containers": [
            {
                "name": CONTAINER,
                "image": placement.image,
                "command": ["python3"],
                "args": command(planned, fresh=fresh),
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": mounts,
            }
        ],
        "volumes": volumes,
    }
    if placement.node:
        term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [placement.node]}]}
        pod_spec["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
        }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(planned), "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": {
            "backoffLimit": 2,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [BAD_INPUT, REFUSED]},
                    }
                ]
            },
            "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec},
        },
    }


def _terminated(pod: dict[str, Any]) -> dict[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return ((status.get("state") or {}).get("terminated")) or {}
    return {}


def _state(job: dict[str, Any]) -> str:
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return "complete" if condition["type"] == "Complete" else "failed"
    return "active"


def failure_line(job: dict[str, Any], pods: list[dict[str, Any]]) -> str:
    """One line: the conversion's own reason (its termination message), else how the pod ended, else the Job's."""
    failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
    failed.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
    for pod in reversed(failed):
        ended = _terminated(pod)
        text = " ".join(str(ended.get("message") or "").split())
        if text:
            return text
        if ended:
            return (
                f"pod {pod['metadata']['name']} exited {ended.get('exitCode')} ({ended.get('reason') or 'no reason'})"
            )
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed":
            return f"Job {job['metadata']['name']} failed: {condition.get('reason')}: {condition.get('message', '')}"
    return f"Job {job['metadata']['name']} failed"


def inspection_of(pods: list[dict[str, Any]]) -> Inspection:
    for pod in pods:
        if (pod.get("status") or {}).get("phase") == "Succeeded":
            message = _terminated(pod).get("message") or ""
            try:
                return Inspection.from_dict(json.loads(message))
            except (ValueError, TypeError):
                raise TargetError(f"pod {pod['metadata']['name']} gave no inspection: {message[:200]!r}") from None
    raise TargetError("the conversion Job completed, but none of its pods succeeded")


class JobApi:
    """The few calls the conversion makes, through the kubernetes client's typed APIs."""

    def __init__(self, api_client: Any) -> None:
        import kubernetes

        self.batch = kubernetes.client.BatchV1Api(api_client)
        self.core = kubernetes.client.CoreV1Api(api_client)

    def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            raw = self.batch.read_namespaced_job(name, namespace, _preload_content=False)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        job: dict[str, Any] = json.loads(raw.data)
        return job

    def create_job(self, namespace: str, body: dict[str, Any]) -> None:
        self.batch.create_namespaced_job(namespace, body, _preload_content=False)

    def pods_of(self, namespace: str, name: str) -> list[dict[str, Any]]:
        raw = self.core.list_namespaced_pod(namespace, label_selector=f"job-name={name}", _preload_content=False)
        pods: list[dict[str, Any]] = json.loads(raw.data)["items"]
        return pods

    def delete_job(self, namespace: str, name: str, *, wait_for_pods: bool = False) -> None:
        """Delete the Job and its pods; ``wait_for_pods``: the Job stays until its pods are gone (Foreground)."""
        from kubernetes.client.exceptions import ApiException

        policy = "Foreground" if wait_for_pods else "Background"
        try:
            self.batch.delete_namespaced_job(name, namespace, propagation_policy=policy, _preload_content=False)
        except ApiException as error:
            if error.status != 404:
                raise


def own_placement(api: JobApi) -> Placement:
    """In a pod (the downward API's POD_NAME/POD_NAMESPACE): its node and image; else the default image."""
    image = os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE
    name, namespace = os.environ.get("POD_NAME"), os.environ.get("POD_NAMESPACE")
    if not (name and namespace):
        return Placement(image=image)
    try:
        raw = api.core.read_namespaced_pod(name, namespace, _preload_content=False)
    except Exception as error:  # cannot read its own pod: place the Job anywhere
        log.warning("conversion Job: cannot read pod %s/%s (%s): not pinned to its node", namespace, name, error)
        return Placement(image=image)
    pod = json.loads(raw.data)
    containers = (pod.get("spec") or {}).get("containers") or []
    own_image = containers[0].get("image") if containers else None
    return Placement(image=os.environ.get(IMAGE_ENV) or own_image or DEFAULT_IMAGE, node=pod["spec"].get("nodeName"))


def run_conversion_job(
    api: JobApi,
    planned: PlannedVM,
    namespace: str,
    *,
    fresh: bool,
    announce: Callable[[str], None],
    timeout: float = TIMEOUT,
) -> Inspection:
    """Convert ``planned``'s guest in its claims through a Job; GuestConversionError with the reason on failure."""
    from kubernetes.client.exceptions import ApiException

    name = job_name(planned)
    try:
        existing = api.read_job(namespace, name)
        if existing is not None and (
            ((existing.get("metadata") or {}).get("annotations") or {}).get(SOURCE_ANNOTATION) != planned.source_name
        ):
            raise TargetError(f"Job {namespace}/{name} exists and is not this VM's conversion")
        if existing is not None and (fresh or _state(existing) == "failed"):
            # an earlier attempt's: gone with its pods before this one starts over (the state is on the claim)
            api.delete_job(namespace, name, wait_for_pods=True)
            _wait_gone(api, namespace, name)
            existing = None
        if existing is None:
            api.create_job(namespace, conversion_job(planned, namespace, own_placement(api), fresh=fresh))
            announce(f"convert-guest: Job {namespace}/{name} created (virt-v2v in a pod that mounts the VM's claims)")
        else:
            announce(f"convert-guest: Job {namespace}/{name} from an earlier run is still there: waiting for it")
    except ApiException as error:
        raise TargetError(f"creating the conversion Job {namespace}/{name}: {apply.api_error_reason(error)}") from None

    deadline = time.monotonic() + timeout
    errors = 0
    job: dict[str, Any] | None = None
    while True:
        try:
            job = api.read_job(namespace, name)
            errors = 0
        except ApiException as error:
            errors += 1
            if errors >= API_ERRORS:
                reason = apply.api_error_reason(error)
                raise TargetError(f"reading the conversion Job {namespace}/{name}: {reason}") from None
        if job is None and errors == 0:
            raise TargetError(f"the conversion Job {namespace}/{name} was deleted before it finished")
        if job is not None and _state(job) != "active":
            break
        if time.monotonic() > deadline:
            api.delete_job(namespace, name)
            raise TargetError(f"the conversion Job {namespace}/{name} did not finish within {timeout:.0f}s (deleted)")
        time.sleep(POLL)
    try:
        pods = api.pods_of(namespace, name)
    except ApiException as error:
        raise TargetError(f"reading the conversion Job's pods: {apply.api_error_reason(error)}") from None
    try:
        if _state(job) == "failed":
            reason = re.sub(r"^guest conversion of \S+ failed: ", "", failure_line(job, pods))
            raise GuestConversionError(
                f"guest conversion of {planned.target_name} (Job {namespace}/{name}) failed: {reason}"
            )
        return inspection_of(pods)
    finally:
        try:
            api.delete_job(namespace, name)
        except ApiException as error:
            log.warning("conversion Job %s/%s not deleted: %s", namespace, name, apply.api_error_reason(error))


def convert_in_job(
    client: Any,
    plan: Plan,
    planned: PlannedVM,
    namespace: str,
    *,
    fresh: bool,
    announce: Callable[[str], None],
    timeout: float = TIMEOUT,
) -> str:
    """The convert-guest step of a cluster target: virt-v2v in a Job on the VM's claims (``client``: the
    dynamic client), the inspection written for `migrator status`, the VirtualMachine applied again with
    virtio disks and NICs and the OS labels. Returns the step's one-line summary; GuestConversionError
    (nothing applied, nothing started) when the conversion fails."""
    inspection = run_conversion_job(
        JobApi(client.client), planned, namespace, fresh=fresh, announce=announce, timeout=timeout
    )
    guest.write_inspection(apply_work_dir(plan, planned), inspection)
    guest.report_inspection(planned.target_name, inspection, announce)
    manifests = vm_manifests(planned, plan, spec_options(None, False, inspection))
    apply.server_side_apply(client, manifests.virtual_machine)
    return guest.summary_line(inspection)


def _wait_gone(api: JobApi, namespace: str, name: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while api.read_job(namespace, name) is not None:
        if time.monotonic() > deadline:
            raise TargetError(f"the earlier conversion Job {namespace}/{name} is still being deleted")
        time.sleep(0.5)
