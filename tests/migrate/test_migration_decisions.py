"""The Migration controller's pure decisions: limits, bounded retries, cancel, the cutover time, status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from runtime.migration.decisions import CANCEL, MIGRATE, JobView, Spec, decide
from runtime.migration.plan import PlanDisk, PlanVM, select, vms_of

NOW = datetime(2026, 12, 5, 22, 0, tzinfo=UTC)


def vm(name: str, blocked: bool = False) -> PlanVM:
    return PlanVM(name, name.lower(), (PlanDisk(f"{name.lower()}-disk-0", 1 << 30, None),), blocked)


def job(name: str, state: str, attempt: int = 1, purpose: str = MIGRATE, **kw: object) -> JobView:
    return JobView(vm=name, name=f"m-{name}-{attempt}", purpose=purpose, attempt=attempt, state=state, **kw)  # type: ignore[arg-type]


def phases(decision) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {s["name"]: s["phase"] for s in decision.status["vms"]}


def test_at_most_max_in_flight_jobs_and_running_ones_keep_their_slots() -> None:
    vms = [vm(n) for n in ("A", "B", "C", "D")]
    first = decide(vms, [], Spec(max_in_flight=2), NOW)
    assert [(s.vm.name, s.attempt) for s in first.start] == [("A", 1), ("B", 1)]
    assert phases(first) == {"A": "Scheduled", "B": "Scheduled", "C": "Pending", "D": "Pending"}
    # C's Job runs (started earlier, e.g. before a restart): it holds a slot, only one more starts
    later = decide(vms, [job("A", "succeeded"), job("C", "active")], Spec(max_in_flight=2), NOW)
    assert [s.vm.name for s in later.start] == ["B"]
    assert later.status["phase"] == "Running"


def test_failed_attempts_are_retried_until_the_backoff_limit_then_say_why() -> None:
    vms = [vm("A")]
    retry = decide(vms, [job("A", "failed", reason="pod exited 4")], Spec(backoff_limit=1), NOW)
    assert [(s.vm.name, s.attempt) for s in retry.start] == [("A", 2)]
    assert retry.status["vms"][0]["error"] == "attempt 1 failed: pod exited 4"
    spent = [job("A", "failed", 1, reason="x"), job("A", "failed", 2, reason="cannot log in")]
    done = decide(vms, spent, Spec(backoff_limit=1), NOW)
    assert done.start == [] and done.status["phase"] == "Failed"
    assert done.status["vms"][0] == {
        "name": "A",
        "attempts": 2,
        "job": "m-A-2",
        "phase": "Failed",
        "error": "2 attempt(s) failed; the last: cannot log in",
    }


def test_nothing_starts_before_the_cutover_time() -> None:
    waiting = decide([vm("A")], [], Spec(cutover=NOW + timedelta(hours=1)), NOW)
    assert waiting.start == [] and waiting.status["phase"] == "Pending"
    assert [s.vm.name for s in decide([vm("A")], [], Spec(cutover=NOW), NOW).start] == ["A"]


def test_cancel_tells_the_running_job_or_rolls_back_once() -> None:
    spec = Spec(cancel=frozenset({"A"}))
    stopping = decide([vm("A")], [job("A", "active")], spec, NOW)
    assert stopping.cancel == ["m-A-1"] and stopping.start == [] and phases(stopping) == {"A": "Canceling"}
    # the Job's own run rolled the VM back and says so
    reported = {"phase": "Canceled", "error": "rolled back"}
    itself = decide([vm("A")], [job("A", "succeeded", progress=reported)], spec, NOW)
    assert phases(itself) == {"A": "Canceled"} and itself.start == []
    rollback = decide([vm("A")], [job("A", "failed", reason="interrupted")], spec, NOW)
    assert [(s.vm.name, s.purpose) for s in rollback.start] == [("A", CANCEL)]
    rolled = decide([vm("A")], [job("A", "failed"), job("A", "succeeded", purpose=CANCEL)], spec, NOW)
    assert phases(rolled) == {"A": "Canceled"} and rolled.start == [] and rolled.status["phase"] == "Succeeded"
    never = decide([vm("A")], [], spec, NOW)
    assert never.start == [] and phases(never) == {"A": "Canceled"}
    # a VM already migrated is not undone by a late cancel
    assert phases(decide([vm("A")], [job("A", "succeeded")], spec, NOW)) == {"A": "Succeeded"}


def test_blocked_vms_are_skipped_and_steps_come_from_the_pod() -> None:
    steps = [{"name": "transfer", "phase": "Running", "progress": {"completed": 10, "total": 40}}]
    decision = decide([vm("A", blocked=True), vm("B")], [job("B", "active", progress={"steps": steps})], Spec(), NOW)
    by_name = {s["name"]: s for s in decision.status["vms"]}
    assert by_name["A"]["phase"] == "Skipped" and "Critical" in by_name["A"]["error"]
    assert by_name["B"]["phase"] == "Running" and by_name["B"]["steps"] == steps


def test_plan_document_and_selection() -> None:
    document = {
        "kind": "Plan",
        "vms": [
            {"source_name": "web-1", "target_name": "web-1", "disks": [], "concerns": []},
            {
                "source_name": "DB_1",
                "target_name": "db-1",
                "disks": [{"claim_name": "db-1-disk-0", "capacity_bytes": 5, "storage_class": None}],
                "concerns": [{"severity": "Critical", "id": "rdm-disk", "message": "m"}],
            },
        ],
    }
    vms = vms_of(document)
    assert [(v.name, v.blocked, len(v.disks)) for v in vms] == [("web-1", False, 0), ("DB_1", True, 1)]
    assert [v.name for v in select(vms, ["db-*"])] == ["DB_1"]  # target names match too
    assert [v.name for v in select(vms, [])] == ["web-1", "DB_1"]


def test_warm_is_refused_honestly_not_run_cold() -> None:
    # spec.type: warm: no Job at all, the Migration Failed with a WarmNotSupported condition
    refused = decide([vm("A")], [], Spec(warm=True), NOW)
    assert refused.start == [] and refused.status["phase"] == "Failed"
    assert refused.status["conditions"][0]["reason"] == "WarmNotSupported"
    assert "migrator migrate --warm" in refused.status["conditions"][0]["message"]
    # a VM whose plan entry says type: warm is skipped (not moved cold behind the plan's back); the others go
    warm = PlanVM("W", "w", (PlanDisk("w-disk-0", 1 << 30, None),), False, warm=True)
    mixed = decide([warm, vm("A")], [], Spec(), NOW)
    assert [s.vm.name for s in mixed.start] == ["A"]
    assert phases(mixed) == {"W": "Skipped", "A": "Scheduled"}
    assert "not supported in a Migration yet" in mixed.status["vms"][0]["error"]
    assert "W" in mixed.status["conditions"][0]["message"]


def test_plan_type_warm_is_read() -> None:
    document = {
        "kind": "Plan",
        "vms": [{"source_name": "W", "target_name": "w", "type": "warm", "disks": [], "concerns": []}],
    }
    assert vms_of(document)[0].warm is True
