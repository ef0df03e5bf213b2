"""Rollback safety, on a real state store with a scripted source and target: the source is powered back on
only once the target is confirmed stopped; the note is restored; downtime is named and ends when the
source is back; an interrupted run says where it stands (and `migrator status` says the same)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import Interrupted, MigratorError
from core.plan import PlannedVM
from migrator.cutover import migration
from migrator.cutover.pipeline import Step, StepResult
from migrator.cutover.ports import TargetStop, Verification
from migrator.cutover.state import StateStore
from migrator.cutover.steps import CutoverContext, CutoverOptions, mark_source
from tests.cutover.test_steps import ScriptedSource
from tests.specs.builders import plan_of, planned


class StubbornTarget:
    """A target whose guest ignores the shutdown and survives the destroy: never confirmed stopped."""

    description = "test"

    def __init__(self, confirmed: bool) -> None:
        self.confirmed = confirmed
        self.graces: list[float] = []

    def stop(self, planned: PlannedVM, grace: float) -> TargetStop:
        self.graces.append(grace)
        if self.confirmed:
            return TargetStop(True, f"target {planned.target_name} destroyed after the {grace:.0f}s grace period")
        return TargetStop(False, f"target {planned.target_name} still runs")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    store = StateStore(tmp_path)
    yield store
    store.close()


def _ctx(store: StateStore, target: StubbornTarget, announced: list[str] | None = None) -> CutoverContext:
    p = planned()
    options = CutoverOptions(shutdown_timeout=0.1, verification=Verification(), poll_interval=0.01, stop_grace=7)
    ctx = CutoverContext(plan_of(p), p, ScriptedSource(), target, store, options)  # type: ignore[arg-type]
    if announced is not None:
        ctx.announce = announced.append
    return ctx


def _source_off_by_cutover(ctx: CutoverContext) -> None:
    migration.begin(ctx)
    ctx.store.set_fact(ctx.key, "source_power_state", "poweredOn")
    ctx.store.set_fact(ctx.key, "source_off_at", 1000.0)
    ctx.source.state = "poweredOff"  # type: ignore[attr-defined]


def test_the_source_stays_off_when_the_target_cannot_be_confirmed_stopped(store: StateStore) -> None:
    target = StubbornTarget(confirmed=False)
    ctx = _ctx(store, target)
    _source_off_by_cutover(ctx)
    with pytest.raises(migration.CutoverFailed) as failed:
        migration.roll_back(ctx)
    assert failed.value.exit_code == 4 and "\n" not in failed.value.message
    assert "not confirmed stopped" in failed.value.message and "left poweredOff" in failed.value.message
    assert ctx.source.calls == []  # type: ignore[attr-defined]  # never powered on
    recorded = store.get(ctx.key)
    assert recorded is not None and recorded.status == "failed"
    assert recorded.where and recorded.where.startswith("source is off, the target could not be confirmed stopped")
    assert target.graces == [7]  # the announced grace, not the launcher's own


def test_a_failed_cutover_with_rollback_on_failure_never_runs_two_copies(store: StateStore) -> None:
    ctx = _ctx(store, StubbornTarget(confirmed=False))

    def source_off(c: CutoverContext) -> StepResult:
        c.store.set_fact(c.key, "source_power_state", "poweredOn")
        c.store.set_fact(c.key, "source_off_at", 1000.0)
        c.source.state = "poweredOff"  # type: ignore[attr-defined]
        return StepResult()

    def verify(_c: CutoverContext) -> StepResult:
        raise MigratorError("web-01 did not print 'READY' on its console within 15s")

    steps = (Step("source-off", source_off, "off", touches_source=True), Step("verify", verify, "check", True))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(migration, "CUTOVER_STEPS", steps)
        with pytest.raises(migration.CutoverFailed) as failed:
            migration.cut_over(ctx, rollback_on_failure=True)
    assert "rolled back" not in failed.value.message and "not confirmed stopped" in failed.value.message
    assert ctx.source.state == "poweredOff" and "power_on" not in ctx.source.calls  # type: ignore[attr-defined]


def test_rollback_restores_the_note_and_ends_the_downtime_when_the_source_is_back(store: StateStore) -> None:
    announced: list[str] = []
    ctx = _ctx(store, StubbornTarget(confirmed=True), announced)
    ctx.source.annotation_text = "Owner: web team"  # type: ignore[attr-defined]
    _source_off_by_cutover(ctx)
    ctx.source.mark_migrated = lambda name, note: setattr(  # type: ignore[attr-defined]
        ctx.source, "annotation_text", f"Owner: web team\n{note}"
    )
    mark_source(ctx)
    assert "Migrated by migrator" in ctx.source.annotation_text  # type: ignore[attr-defined]

    actions = migration.roll_back(ctx)
    assert announced[0] == "rollback: stopping target web-01: clean shutdown, destroyed after 7s if still up"
    assert actions == [
        "target web-01 destroyed after the 7s grace period",
        "source web-01: note restored as it was before the cutover",
        "source web-01 powered back on (it was poweredOn before the cutover)",
    ]
    assert ctx.source.annotation_text == "Owner: web team"  # type: ignore[attr-defined]
    recorded = store.get(ctx.key)
    assert recorded is not None and recorded.status == "rolled_back"
    assert recorded.downtime_to_source_back_seconds is not None and recorded.downtime_to_verified_seconds is None
    assert recorded.downtime_seconds == recorded.downtime_to_source_back_seconds
    assert migration.downtime_line(recorded).endswith("s (source off → source back on)")


def test_an_interrupted_cutover_after_source_off_says_where_it_stands(store: StateStore) -> None:
    ctx = _ctx(store, StubbornTarget(confirmed=True))

    def source_off(c: CutoverContext) -> StepResult:
        c.store.set_fact(c.key, "source_off_at", 1000.0)
        return StepResult()

    def transfer(_c: CutoverContext) -> StepResult:
        raise KeyboardInterrupt  # Ctrl-C in the middle of the copy

    steps = (Step("source-off", source_off, "off", True), Step("transfer", transfer, "copy", True))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(migration, "CUTOVER_STEPS", steps)
        with pytest.raises(migration.CutoverInterrupted) as interrupted:
            migration.cut_over(ctx, rollback_on_failure=True)  # an interruption is not a failure: no rollback
    expected = "source is off, interrupted in step transfer: re-run to resume, or roll back"
    assert interrupted.value.message == expected and interrupted.value.exit_code == 130
    recorded = store.get(ctx.key)
    assert recorded is not None and recorded.status == "interrupted" and recorded.where == expected
    assert recorded.facts["interrupted"]["step"] == "transfer"
    assert migration.begin(ctx).status == "running"  # a re-run resumes it


def test_a_run_killed_after_source_off_is_not_shown_as_running_forever(store: StateStore) -> None:
    ctx = _ctx(store, StubbornTarget(confirmed=True))
    _source_off_by_cutover(ctx)
    store.step_started(ctx.key, "transfer")
    recorded = store.get(ctx.key)
    assert recorded is not None and recorded.status == "running"
    with migration.exclusive_run(store, ctx.key):  # alive: nothing to say
        assert migration.where(store, recorded) is None
    assert migration.where(store, recorded) == (
        "source is off, the run ended in step transfer without a word (killed?): re-run to resume, or roll back"
    )


def test_a_transfer_the_disk_engine_reports_interrupted_is_not_rolled_back(store: StateStore) -> None:
    target = StubbornTarget(confirmed=True)
    ctx = _ctx(store, target)

    def source_off(c: CutoverContext) -> StepResult:
        c.store.set_fact(c.key, "source_off_at", 1000.0)
        return StepResult()

    def transfer(_c: CutoverContext) -> StepResult:
        raise Interrupted("interrupted: the chunks copied so far are recorded: run again to resume")

    steps = (Step("source-off", source_off, "off", True), Step("transfer", transfer, "copy", True))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(migration, "CUTOVER_STEPS", steps)
        with pytest.raises(migration.CutoverInterrupted, match="^source is off, interrupted in step transfer"):
            migration.cut_over(ctx, rollback_on_failure=True)
    assert target.graces == []  # no rollback
    recorded = store.get(ctx.key)
    assert recorded is not None and recorded.status == "interrupted" and recorded.step("transfer").status == "started"


def test_the_engines_interruption_is_an_interruption_not_a_failure() -> None:
    """Ctrl-C during a cutover's transfer surfaces as the engine's TransferInterrupted: the cutover must
    take it for an interruption (recorded, resumable), never for a failed step to roll back."""
    from converters.disks import TransferInterrupted
    from core.errors import DiskError, Interrupted

    interrupted = TransferInterrupted("transfer interrupted at 2 %")
    assert isinstance(interrupted, Interrupted) and isinstance(interrupted, DiskError)
    assert interrupted.exit_code == 130
