"""The cutover steps' decisions, against a scripted source (the simulator cannot play a guest that
accepts a shutdown and then ignores it: its VMs run no VMware Tools; test_cutover_e2e covers that path)."""

from __future__ import annotations

import time
from pathlib import Path

from core.errors import SourceError
from core.plan import Plan, PlannedVM
from migrator.cutover.ports import TargetStop, Verification
from migrator.cutover.state import StateStore
from migrator.cutover.steps import CutoverContext, CutoverOptions, rollback, source_off
from tests.specs.builders import plan_of, planned


class ScriptedSource:
    """A source whose guest takes the shutdown request and never stops (as a hung guest OS would)."""

    url = "vsphere://user@vc"

    def __init__(self) -> None:
        self.state = "poweredOn"
        self.calls: list[str] = []

    def power_state(self, name: str) -> str:
        return self.state

    def shutdown_guest(self, name: str, timeout: float = 300.0) -> None:
        self.calls.append(f"shutdown_guest({timeout})")
        time.sleep(timeout)
        raise SourceError(f"guest shutdown of {name} did not finish within {int(timeout)} s")

    def power_off(self, name: str) -> None:
        self.calls.append("power_off")
        self.state = "poweredOff"

    def power_on(self, name: str) -> None:
        self.calls.append("power_on")
        self.state = "poweredOn"

    annotation_text = ""

    def annotation(self, name: str) -> str:
        return self.annotation_text

    def unmark_migrated(self, name: str, note: str, annotation: str) -> bool:
        self.calls.append("unmark_migrated")
        changed = note in self.annotation_text
        self.annotation_text = annotation
        return changed


class NoTarget:
    description = "test"

    def stop(self, planned: PlannedVM, grace: float) -> TargetStop:
        return TargetStop(True, f"target {planned.target_name} was not running")


def _ctx(tmp_path: Path, source: ScriptedSource) -> tuple[CutoverContext, Plan]:
    p = planned()
    plan = plan_of(p)
    store = StateStore(tmp_path)
    store.begin(p.source_name, plan=plan.name, source=source.url, target="test")
    options = CutoverOptions(shutdown_timeout=0.5, verification=Verification(), poll_interval=0.05)
    return CutoverContext(plan, p, source, NoTarget(), store, options), plan  # type: ignore[arg-type]


def test_a_guest_that_ignores_shutdown_is_powered_off_after_the_timeout_and_rollback_restores_it(
    tmp_path: Path,
) -> None:
    source = ScriptedSource()
    ctx, _plan = _ctx(tmp_path, source)
    started = time.monotonic()
    result = source_off(ctx)
    assert time.monotonic() - started >= 0.5
    assert source.calls == ["shutdown_guest(0.5)", "power_off"]
    assert result.detail == "power-off after the guest did not shut down"
    assert ctx.store.fact(ctx.key, "source_power_state") == "poweredOn"
    assert ctx.store.fact(ctx.key, "source_off_at") is not None

    # re-run (a crash right after): nothing is done twice, the recorded state is kept
    again = source_off(ctx)
    assert again.detail == "already off" and source.calls == ["shutdown_guest(0.5)", "power_off"]
    assert ctx.store.fact(ctx.key, "source_power_state") == "poweredOn"

    first = rollback(ctx)
    assert first == [
        "target web-01 was not running",
        "source web-01 powered back on (it was poweredOn before the cutover)",
    ]
    assert rollback(ctx)[-1] == "source web-01 was already powered on"
    assert source.calls.count("power_on") == 1
