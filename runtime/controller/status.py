"""Pure decisions of the controller: what a VirtualMachine needs now, and how its status reads.

Nothing here does I/O; every function recomputes from the objects as they are (level-triggered),
so a controller restarted at any point reaches the same answers.

- ``decide(vm, vmi, now)``: create or delete the instance, record a start failure, or wait.
- ``vm_status(vm, vmi, missing_pvcs, now)``: ``printableStatus``, ``ready``, ``created``, conditions.
- ``vmi_status_from_pod(vmi, pod)``: the instance phase the launcher pod implies.

Run strategies as KubeVirt defines them: Always (recreate whatever the end), RerunOnFailure (recreate
after a failure, not after a clean shutdown), Once (one run), Manual (start/stop/restart requests only),
Halted (no instance). A failed instance that is recreated first waits an exponential backoff
(``backoff_seconds``: base × 2^(failures-1), capped at 5 minutes) shown as ``CrashLoopBackOff``,
kept in ``status.startFailure`` as KubeVirt does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from runtime.controller.names import ANNOTATION_RESTART, ANNOTATION_START, ANNOTATION_STOP
from runtime.launcher.contract import FINAL as LAUNCHER_FINAL
from runtime.launcher.contract import Exit, exit_status

FINAL = tuple(str(phase) for phase in LAUNCHER_FINAL)  # "Succeeded", "Failed"
STARTING = ("", "Pending", "Scheduling", "Scheduled")
BACKOFF_CAP = 300.0
STABLE_RUN = timedelta(minutes=5)  # a start failure count is forgotten after a run this long


def backoff_base() -> float:
    """Seconds before the first restart after a failure (KubeVirt: 10 s); env MIGRATOR_BACKOFF_BASE."""
    return float(os.environ.get("MIGRATOR_BACKOFF_BASE", "10"))


def backoff_seconds(failures: int, base: float | None = None) -> float:
    base = backoff_base() if base is None else base
    return min(base * 2 ** max(failures - 1, 0), BACKOFF_CAP)


def parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_strategy(vm: dict[str, Any]) -> str:
    spec = vm.get("spec") or {}
    if spec.get("runStrategy"):
        return str(spec["runStrategy"])
    if spec.get("running") is True:
        return "Always"
    return "Halted"


def _annotation_time(vm: dict[str, Any], key: str) -> datetime | None:
    return parse_time(((vm.get("metadata") or {}).get("annotations") or {}).get(key))


def _created(obj: dict[str, Any]) -> datetime | None:
    return parse_time((obj.get("metadata") or {}).get("creationTimestamp"))


def phase_of(vmi: dict[str, Any] | None) -> str:
    return str(((vmi or {}).get("status") or {}).get("phase") or "")


def _deleting(obj: dict[str, Any] | None) -> bool:
    return bool(obj and (obj.get("metadata") or {}).get("deletionTimestamp"))


def _before(when: datetime | None, request: datetime | None) -> bool:
    """True when a request came after ``when`` (one-second timestamps: a request in the same second counts)."""
    return request is not None and (when is None or when <= request)


def manual_wants_running(vm: dict[str, Any]) -> bool:
    start = max(
        filter(None, [_annotation_time(vm, ANNOTATION_START), _annotation_time(vm, ANNOTATION_RESTART)]), default=None
    )
    stop = _annotation_time(vm, ANNOTATION_STOP)
    return start is not None and (stop is None or start > stop)


@dataclass
class Decision:
    """What the VM reconciler should do now."""

    action: str = "none"  # none | create | delete | wait
    reason: str = ""
    requeue_after: float | None = None
    # None: leave status.startFailure as is; {}: clear it; a dict: set it.
    start_failure: dict[str, Any] | None = field(default=None)


def _failure_record(vm: dict[str, Any], vmi: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    previous = (vm.get("status") or {}).get("startFailure") or {}
    uid = (vmi.get("metadata") or {}).get("uid")
    if previous.get("lastFailedVMIUID") == uid:
        return None
    count = int(previous.get("consecutiveFailCount") or 0) + 1
    return {
        "consecutiveFailCount": count,
        "lastFailedVMIUID": uid,
        "retryAfterTimestamp": format_time(now + timedelta(seconds=backoff_seconds(count))),
    }


def decide(vm: dict[str, Any], vmi: dict[str, Any] | None, now: datetime) -> Decision:
    strategy = run_strategy(vm)
    if _deleting(vm):
        return Decision("none", "VM is being deleted: owner references cascade")
    failure = (vm.get("status") or {}).get("startFailure") or None
    if vmi is not None:
        if _deleting(vmi):
            return Decision("wait", "instance is terminating")
        created = _created(vmi)
        phase = phase_of(vmi)
        if strategy == "Halted":
            return Decision("delete", "runStrategy Halted", start_failure={} if failure else None)
        if _before(created, _annotation_time(vm, ANNOTATION_RESTART)):
            return Decision("delete", "restart requested")
        if (
            strategy == "Manual"
            and _before(created, _annotation_time(vm, ANNOTATION_STOP))
            and not manual_wants_running(vm)
        ):
            return Decision("delete", "stop requested")
        if phase == "Failed" and strategy in ("Always", "RerunOnFailure"):
            return Decision(
                "delete", "instance failed: restart after backoff", start_failure=_failure_record(vm, vmi, now)
            )
        if phase == "Succeeded" and strategy == "Always":
            return Decision(
                "delete", "instance shut down: runStrategy Always restarts it", start_failure={} if failure else None
            )
        if phase in FINAL and strategy == "Manual" and _before(created, _annotation_time(vm, ANNOTATION_START)):
            return Decision("delete", "start requested after the instance stopped")
        if phase == "Running" and failure and created and now - created > STABLE_RUN:
            return Decision("none", "ran long enough: forget start failures", start_failure={})
        return Decision("none", f"instance {phase or 'Pending'}")
    # No instance.
    wants = strategy in ("Always", "RerunOnFailure", "Once") or (strategy == "Manual" and manual_wants_running(vm))
    if not wants:
        return Decision("none", f"runStrategy {strategy}")
    retry_after = parse_time((failure or {}).get("retryAfterTimestamp"))
    if retry_after is not None and retry_after > now:
        return Decision("wait", "CrashLoopBackOff", requeue_after=(retry_after - now).total_seconds())
    return Decision("create", f"runStrategy {strategy}")


def _condition(vmi: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for condition in ((vmi or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


def printable_status(vm: dict[str, Any], vmi: dict[str, Any] | None, missing_pvcs: list[str], now: datetime) -> str:
    strategy = run_strategy(vm)
    if _deleting(vm):
        return "Terminating"
    if vmi is not None and _deleting(vmi):
        return "Stopping"
    if missing_pvcs and (vmi is None or phase_of(vmi) in STARTING):
        return "ErrorPvcNotFound"
    failure = (vm.get("status") or {}).get("startFailure") or {}
    retry_after = parse_time(failure.get("retryAfterTimestamp"))
    if vmi is None:
        if retry_after is not None and retry_after > now and strategy in ("Always", "RerunOnFailure"):
            return "CrashLoopBackOff"
        return "Stopped"
    phase = phase_of(vmi)
    if strategy == "Halted":
        return "Stopping"
    if phase in STARTING:
        scheduled = _condition(vmi, "PodScheduled")
        if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
            return "ErrorUnschedulable"
        return "Starting"
    if phase == "Running":
        paused = _condition(vmi, "Paused")
        return "Paused" if paused and paused.get("status") == "True" else "Running"
    if phase == "Failed" and strategy in ("Always", "RerunOnFailure"):
        return "CrashLoopBackOff"
    return "Stopped"


def vm_status(vm: dict[str, Any], vmi: dict[str, Any] | None, missing_pvcs: list[str], now: datetime) -> dict[str, Any]:
    """The VirtualMachine's status fields the controller owns (merge-patched as a whole)."""
    printable = printable_status(vm, vmi, missing_pvcs, now)
    vmi_ready = _condition(vmi, "Ready")
    ready = bool(vmi is not None and phase_of(vmi) == "Running" and vmi_ready and vmi_ready.get("status") == "True")
    if ready:
        reason, message = "", ""
    elif missing_pvcs:
        reason, message = "PvcNotFound", "PersistentVolumeClaims not found: " + ", ".join(missing_pvcs)
    elif vmi is None:
        reason, message = "VMINotExists", "VMI does not exist"
    else:
        reason, message = (
            (vmi_ready or {}).get("reason") or "NotRunning",
            (vmi_ready or {}).get("message") or _not_ready_message(vmi),
        )
    conditions = [
        _keep_time(
            vm, {"type": "Ready", "status": "True" if ready else "False", "reason": reason, "message": message}, now
        )
    ]
    paused = _condition(vmi, "Paused")
    if paused and paused.get("status") == "True":
        conditions.append(
            _keep_time(
                vm,
                {"type": "Paused", "status": "True", "reason": paused.get("reason") or "PausedByUser", "message": ""},
                now,
            )
        )
    return {
        "printableStatus": printable,
        "ready": ready,
        "created": vmi is not None,
        "runStrategy": run_strategy(vm),
        "conditions": conditions,
    }


def vm_view(vmi: dict[str, Any] | None) -> tuple[Any, ...]:
    """What of an instance ``decide`` and ``vm_status`` read: a change elsewhere (a label, its nodeName, Pending
    to Scheduled) needs no VM reconcile."""
    if vmi is None:
        return ()
    phase = phase_of(vmi)
    conditions = tuple(
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
        for c in (vmi.get("status") or {}).get("conditions") or []
        if c.get("type") in ("Ready", "Paused", "PodScheduled")
    )
    metadata = vmi.get("metadata") or {}
    bucket = "starting" if phase in STARTING else phase
    return (metadata.get("uid"), metadata.get("creationTimestamp"), _deleting(vmi), bucket, conditions)


def _not_ready_message(vmi: dict[str, Any]) -> str:
    # One message while the instance starts (Pending, Scheduling, Scheduled): each step is not a VM status write.
    phase = phase_of(vmi)
    return "VMI is starting" if phase in STARTING else f"VMI is {phase}"


def recheck_after(vm: dict[str, Any], vmi: dict[str, Any] | None, now: datetime) -> float | None:
    """Seconds until time alone changes what ``decide`` says (a backoff ends, a run becomes stable), or None."""
    failure = (vm.get("status") or {}).get("startFailure") or {}
    if not failure:
        return None
    retry_after = parse_time(failure.get("retryAfterTimestamp"))
    if vmi is None and retry_after is not None:
        return max((retry_after - now).total_seconds(), 0.0)
    created = _created(vmi) if vmi is not None else None
    if vmi is not None and phase_of(vmi) == "Running" and created is not None:
        return max((created + STABLE_RUN - now).total_seconds(), 0.0)
    return None


def _keep_time(vm: dict[str, Any], condition: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A condition keeps its lastTransitionTime while its status does not change (so a no-op stays a no-op)."""
    for old in (vm.get("status") or {}).get("conditions") or []:
        if old.get("type") == condition["type"] and old.get("status") == condition["status"]:
            condition["lastTransitionTime"] = old.get("lastTransitionTime") or format_time(now)
            break
    else:
        condition["lastTransitionTime"] = format_time(now)
    return condition


def vmi_status_from_pod(vmi: dict[str, Any], pod: dict[str, Any] | None) -> dict[str, Any]:
    """The status fields the launcher pod implies for the instance ({} when nothing changes).

    The controller moves an instance through Pending → (Scheduling, while the scheduler reports the pod
    unschedulable) → Scheduled (bound) and to Succeeded/Failed
    when the pod ends or vanishes; Running (and Paused, interfaces, guest info) is the node handler's,
    which alone talks to the launcher.
    """
    phase = phase_of(vmi)
    if phase in FINAL or _deleting(vmi):
        return {}
    if pod is None:
        if phase in ("Scheduled", "Running"):
            return {"phase": "Failed", "reason": "PodGone"}
        return {} if phase == "Pending" else {"phase": "Pending"}
    pod_status = pod.get("status") or {}
    pod_phase = pod_status.get("phase") or "Pending"
    node = (pod.get("spec") or {}).get("nodeName")
    if pod_phase == "Succeeded":
        return {"phase": "Succeeded", "reason": "GuestShutdown"}
    if pod_phase == "Failed":
        return {"phase": "Failed", "reason": _pod_failure_reason(pod)}
    if _deleting(pod):
        return {}
    if not node:
        # Pending until the pod is bound; Scheduling once the scheduler has said why it is not (Unschedulable).
        # A pod bound at once (the common case) costs no write for the step between.
        scheduled = next((c for c in pod_status.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
        if not scheduled or scheduled.get("status") != "False":
            return {}
        changes: dict[str, Any] = {}
        if phase != "Scheduling":
            changes["phase"] = "Scheduling"
        current = _condition(vmi, "PodScheduled")
        wanted = {
            "type": "PodScheduled",
            "status": "False",
            "reason": scheduled.get("reason") or "",
            "message": scheduled.get("message") or "",
        }
        if not current or any(current.get(k) != v for k, v in wanted.items()):
            changes["conditions"] = [wanted]
        return changes
    if phase in STARTING:
        changes = {"phase": "Scheduled", "nodeName": node}
        if _condition(vmi, "PodScheduled"):
            changes["conditions"] = [
                c for c in (vmi.get("status") or {}).get("conditions") or [] if c.get("type") != "PodScheduled"
            ]
        if phase == "Scheduled" and (vmi.get("status") or {}).get("nodeName") == node and "conditions" not in changes:
            return {}
        return changes
    return {}


def _pod_failure_reason(pod: dict[str, Any]) -> str:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated") or {}
        if "exitCode" in terminated:
            code = exit_status(int(terminated["exitCode"]))
            return code.reason if code not in (None, Exit.SHUTDOWN) else terminated.get("reason") or "PodFailed"
    return "PodFailed"


def now_utc() -> datetime:
    return datetime.now(UTC)
