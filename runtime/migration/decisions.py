"""Pure, level-triggered decisions for a Migration: which Jobs to start, retry or stop, and its status.

Each VM has one Job per attempt (``attempt`` 1, 2, …; the Job itself never retries, so every
failure is seen, explained and counted here): a failed attempt is followed by another until
``backoffLimit`` retries are spent. At most ``maxInFlight`` VMs have a Job running; none starts
before ``cutover``. A VM named in ``cancel`` with a Job running has that Job's pod told to cancel
(an annotation its `migrate` process watches): it rolls the VM back itself at its next safe point,
as `migrator cancel` makes a local run do; a VM whose Job had already failed gets one cancel Job
that rolls it back (the same `migrate` code path, told to cancel it first). A VM's status is
Forklift's per-VM pipeline: phase, each step with its progress (completed/total bytes) and error,
as the Job's pod reports them, and why the last attempt failed.

Warm migration is not run by a Migration yet (its Jobs would need the precopy rounds written into
the claims the Job mounts, and a way to ask for the cutover): a Migration with ``spec.type: warm``
is refused whole (phase Failed, no Job), and a VM whose plan entry says ``type: warm`` is skipped
rather than moved cold behind the plan's back; both say so in a ``WarmNotSupported`` condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runtime.migration.plan import PlanVM

MIGRATE, CANCEL = "migrate", "cancel"
WARM_NOT_SUPPORTED = "WarmNotSupported"
WARM_HINT = "run it from a machine with `migrator migrate --warm`, or plan it cold"


@dataclass(frozen=True)
class Spec:
    max_in_flight: int = 4
    backoff_limit: int = 2
    cutover: datetime | None = None
    cancel: frozenset[str] = frozenset()
    warm: bool = False  # spec.type: warm


@dataclass(frozen=True)
class JobView:
    vm: str  # source name
    name: str
    purpose: str  # migrate | cancel
    attempt: int
    state: str  # active | succeeded | failed
    reason: str | None = None  # why it failed, from the pod and the Job
    progress: dict[str, Any] | None = None  # the pod's migrator.io/progress document
    started: str | None = None
    finished: str | None = None


@dataclass(frozen=True)
class Start:
    vm: PlanVM
    purpose: str
    attempt: int


@dataclass
class Decision:
    start: list[Start] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)  # running Jobs whose pod is told to cancel (an annotation)
    status: dict[str, Any] = field(default_factory=dict)


def _cancelled(vm: PlanVM, spec: Spec) -> bool:
    return vm.name in spec.cancel or vm.target_name in spec.cancel


def _vm_status(
    vm: PlanVM, jobs: Sequence[JobView], spec: Spec, decision: Decision, slots: list[int], now: datetime
) -> dict[str, Any]:
    migrate = sorted((j for j in jobs if j.purpose == MIGRATE), key=lambda j: j.attempt)
    cancel = [j for j in jobs if j.purpose == CANCEL]
    last = migrate[-1] if migrate else None
    status: dict[str, Any] = {"name": vm.name, "attempts": len(migrate)}
    if last is not None:
        status["job"] = last.name
        status["started"] = migrate[0].started
        progress = last.progress or {}
        if progress.get("steps"):
            status["steps"] = progress["steps"]
    if vm.blocked:
        return {**status, "phase": "Skipped", "error": "blocked by a Critical concern in the plan"}
    if vm.warm and last is None:
        return {
            **status,
            "phase": "Skipped",
            "error": f"type: warm in the plan is not supported in a Migration yet: {WARM_HINT}",
        }
    reported = (last.progress or {}).get("phase") if last is not None else None
    if last is not None and last.state == "succeeded" and reported == "Canceled":
        return {**status, "phase": "Canceled", "completed": last.finished, "error": (last.progress or {}).get("error")}
    if _cancelled(vm, spec) and not (last is not None and last.state == "succeeded"):
        if last is not None and last.state == "active":
            # the running migration itself rolls back at its next safe point (as `migrator cancel` locally)
            decision.cancel.append(last.name)
            return {**status, "phase": "Canceling"}
        if last is None:
            return {**status, "phase": "Canceled", "error": "cancelled before it started"}
        if not cancel:
            decision.start.append(Start(vm, CANCEL, 1))
            return {**status, "phase": "Canceling"}
        if cancel[0].state == "active":
            return {**status, "phase": "Canceling"}
        if cancel[0].state == "succeeded":
            return {**status, "phase": "Canceled", "completed": cancel[0].finished, "error": "cancelled: rolled back"}
        return {**status, "phase": "Failed", "error": f"cancelled, but the rollback failed: {cancel[0].reason}"}
    if last is not None and last.state == "active":
        slots[0] -= 1
        return {**status, "phase": "Running"}
    if last is not None and last.state == "succeeded":
        done = {**status, "phase": "Succeeded", "completed": last.finished}
        downtime = (last.progress or {}).get("downtime_seconds")
        if downtime is not None:
            done["downtimeSeconds"] = str(round(float(downtime), 3))
        return done
    if last is not None and last.attempt > spec.backoff_limit:
        return {**status, "phase": "Failed", "error": f"{len(migrate)} attempt(s) failed; the last: {last.reason}"}
    if spec.cutover is not None and now < spec.cutover:
        return {**status, "phase": "Pending", "error": None}
    if slots[0] <= 0:
        return {**status, "phase": "Pending"}
    slots[0] -= 1
    decision.start.append(Start(vm, MIGRATE, (last.attempt + 1) if last else 1))
    if last is not None:
        return {**status, "phase": "Retrying", "error": f"attempt {last.attempt} failed: {last.reason}"}
    return {**status, "phase": "Scheduled"}


FINAL = {"Succeeded", "Failed", "Canceled", "Skipped"}


def _warm_condition(message: str) -> dict[str, Any]:
    return {"type": "Supported", "status": "False", "reason": WARM_NOT_SUPPORTED, "message": message}


def decide(vms: Sequence[PlanVM], jobs: Sequence[JobView], spec: Spec, now: datetime) -> Decision:
    decision = Decision()
    if spec.warm:
        message = f"spec.type: warm is not supported in a Migration yet: no VM is migrated; {WARM_HINT}"
        decision.status = {"phase": "Failed", "error": message, "vms": [], "conditions": [_warm_condition(message)]}
        return decision
    by_vm: dict[str, list[JobView]] = {}
    for job in jobs:
        by_vm.setdefault(job.vm, []).append(job)
    # Running Jobs hold their slots first, whatever their order in the plan.
    running = sum(1 for vm in vms if any(j.state == "active" and j.purpose == MIGRATE for j in by_vm.get(vm.name, [])))
    slots = [spec.max_in_flight - running]
    statuses = []
    for vm in vms:
        vm_jobs = by_vm.get(vm.name, [])
        held = any(j.state == "active" and j.purpose == MIGRATE for j in vm_jobs)
        if held:
            slots[0] += 1  # _vm_status takes it again
        statuses.append({k: v for k, v in _vm_status(vm, vm_jobs, spec, decision, slots, now).items() if v is not None})
    phases = [s["phase"] for s in statuses]
    if all(p in FINAL for p in phases):
        phase = "Failed" if "Failed" in phases else "Succeeded"
    elif spec.cutover is not None and now < spec.cutover:
        phase = "Pending"
    else:
        phase = "Running"
    decision.status = {"phase": phase, "vms": statuses}
    warm = [vm.name for vm in vms if vm.warm and not any(j.purpose == MIGRATE for j in by_vm.get(vm.name, []))]
    if warm:
        message = (
            f"type: warm in the plan for {', '.join(warm)}: not supported in a Migration yet, skipped; {WARM_HINT}"
        )
        decision.status["conditions"] = [_warm_condition(message)]
    return decision
