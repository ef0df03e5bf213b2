"""The migration's state transitions (``migrator.cutover.migration``), as every caller (the cutover and
migrate commands, the Migration controller) sees them, on a real state store."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from core.errors import InputError, NotFoundError, TargetError
from migrator.cutover import migration
from migrator.cutover.ports import ClusterAccess, Verification
from migrator.cutover.state import StateStore
from migrator.cutover.steps import CutoverContext, CutoverOptions
from tests.cutover.test_steps import NoTarget, ScriptedSource
from tests.specs.builders import plan_of, planned


def _ctx(store: StateStore, target: str = "test") -> CutoverContext:
    p = planned()
    options = CutoverOptions(shutdown_timeout=0.5, verification=Verification(), poll_interval=0.05)
    no_target = NoTarget()
    no_target.description = target
    return CutoverContext(plan_of(p), p, ScriptedSource(), no_target, store, options)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    store = StateStore(tmp_path)
    yield store
    store.close()


def test_begin_records_the_run_and_resumes_it_on_the_same_target(store: StateStore) -> None:
    ctx = _ctx(store)
    first = migration.begin(ctx)
    assert (first.status, first.target, first.source) == ("running", "test", ctx.plan.source)
    assert store.fact(ctx.key, "target_name") == ctx.planned.target_name
    store.step_started(ctx.key, "preflight")
    store.step_done(ctx.key, "preflight")
    again = migration.begin(ctx)
    assert again.done("preflight") and again.started_at == first.started_at


def test_begin_refuses_a_run_recorded_to_another_target(store: StateStore) -> None:
    migration.begin(_ctx(store, "local:/srv/a"))
    with pytest.raises(InputError, match=r"recorded cutover to local:/srv/a, not cluster:ns: finish or roll"):
        migration.begin(_ctx(store, "cluster:ns"))


def test_a_rolled_back_run_is_forgotten_and_starts_over(store: StateStore) -> None:
    ctx = _ctx(store, "local:/srv/a")
    migration.begin(ctx)
    store.step_started(ctx.key, "preflight")
    store.step_done(ctx.key, "preflight")
    store.set_status(ctx.key, "rolled_back")
    fresh = migration.begin(_ctx(store, "cluster:ns"))  # even to another target
    assert (fresh.status, fresh.target, fresh.steps) == ("running", "cluster:ns", [])


def test_complete_marks_the_run_completed_once(store: StateStore) -> None:
    ctx = _ctx(store)
    done = migration.complete(ctx, migration.begin(ctx))
    assert done.status == "completed" and done.finished_at is not None
    assert migration.complete(ctx, done) == done


def test_roll_back_stops_the_target_restores_the_source_and_records_it(store: StateStore) -> None:
    ctx = _ctx(store)
    with pytest.raises(NotFoundError, match="nothing to roll back"):
        migration.roll_back(ctx)
    migration.begin(ctx)
    store.set_fact(ctx.key, "source_power_state", "poweredOn")
    ctx.source.state = "poweredOff"  # type: ignore[attr-defined]
    with pytest.raises(TargetError, match="went to test, not elsewhere"):
        migration.roll_back(_ctx(store, "elsewhere"))
    announced: list[str] = []
    ctx.announce = announced.append
    actions = migration.roll_back(ctx)
    assert actions == [
        "target web-01 was not running",
        "source web-01 powered back on (it was poweredOn before the cutover)",
    ]
    # the grace period is announced before the target is stopped
    assert announced[0] == "rollback: stopping target web-01: clean shutdown, destroyed after 30s if still up"
    assert announced[1:] == [f"rollback: {a}" for a in actions]
    assert store.get(ctx.key).status == "rolled_back"  # type: ignore[union-attr]


def test_recorded_endpoints_name_the_source_and_target_of_the_run(store: StateStore) -> None:
    with pytest.raises(NotFoundError, match="no cutover recorded for VM web-01"):
        migration.recorded_endpoints(store, "web-01")
    migration.begin(_ctx(store, "local:/srv/out"))
    assert migration.recorded_endpoints(store, "web-01") == migration.RecordedEndpoints(
        source="vsphere://admin@vc.example.com/DC0", output_dir=Path("/srv/out"), namespace=None
    )


def test_recorded_endpoints_of_a_cluster_target_name_its_kubeconfig_and_context(
    store: StateStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cutover --rollback --vm NAME` alone must reach the cluster the cutover went to: the kubeconfig given then
    (made absolute: the rollback may run from elsewhere) and its context are recorded; no credential is."""
    (tmp_path / "kube").mkdir()
    (tmp_path / "kube" / "config").write_text("users: [{name: u, user: {token: s3cret}}]\n")
    monkeypatch.chdir(tmp_path)
    ctx = replace(_ctx(store, "cluster:prod"), cluster_access=ClusterAccess.given("kube/config", "east"))
    migration.begin(ctx)
    assert migration.recorded_endpoints(store, "web-01") == migration.RecordedEndpoints(
        source="vsphere://admin@vc.example.com/DC0",
        output_dir=None,
        namespace="prod",
        cluster_access=ClusterAccess(str(tmp_path / "kube" / "config"), "east"),
    )
    assert "s3cret" not in json.dumps(store.get("web-01").facts)  # type: ignore[union-attr]


def test_only_one_run_of_a_vm_at_a_time(store: StateStore) -> None:
    """Another process holding a VM's run refuses this one; other VMs, and re-entry in-process, go on."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from migrator.cutover.state import only_one_run; from pathlib import Path\n"
            "with only_one_run(Path(sys.argv[1]), 'web-01'):\n    print('held', flush=True); time.sleep(60)",
            str(store.state_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match="another convert or cutover of web-01 is running"):
            with migration.exclusive_run(store, "web-01"):
                pass
        with migration.exclusive_run(store, "db-01"):
            with migration.exclusive_run(store, "db-01"):  # a cutover running its own convert
                pass
    finally:
        holder.kill()
        holder.wait()
    with migration.exclusive_run(store, "web-01"):  # the kernel dropped the dead holder's lock
        pass
