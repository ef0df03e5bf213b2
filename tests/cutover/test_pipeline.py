"""The step pipeline and its durable state: resume after kill -9, failures recorded, status shown."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from core.errors import TargetError
from migrator.cutover.pipeline import Step, StepFailed, StepResult, run_steps
from migrator.cutover.state import StateStore
from tests.faults import kill_after_step_env

MIGRATOR = Path(sys.executable).parent / "migrator"


def _steps(calls: list[str], fail_at: str | None = None) -> list[Step[None]]:
    def make(name: str) -> Step[None]:
        def run(_ctx: None) -> StepResult:
            calls.append(name)
            if name == fail_at:
                raise TargetError(f"{name} broke")
            return StepResult(bytes_moved=10 if name == "transfer" else 0)

        return Step(name=name, run=run, summary=f"do {name}", touches_source=name == "poweroff")

    return [make(n) for n in ("preflight", "poweroff", "transfer", "start")]


def test_steps_run_in_order_and_are_recorded(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.begin("vm1", plan="p", source="vmx:x", target="local")
    calls: list[str] = []
    migration = run_steps("vm1", _steps(calls), None, store)
    assert calls == ["preflight", "poweroff", "transfer", "start"]
    assert [s.status for s in migration.steps] == ["done"] * 4
    assert migration.bytes_moved == 10


def test_failure_is_recorded_and_a_rerun_resumes_at_the_failed_step(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.begin("vm1", plan="p", source="vmx:x", target="local")
    calls: list[str] = []
    with pytest.raises(StepFailed) as failed:
        run_steps("vm1", _steps(calls, fail_at="transfer"), None, store)
    assert failed.value.source_touched and failed.value.step == "transfer"
    migration = store.get("vm1")
    assert migration is not None and migration.status == "failed" and "transfer broke" in (migration.error or "")
    calls.clear()
    store.begin("vm1", plan="p", source="vmx:x", target="local")
    run_steps("vm1", _steps(calls), None, store)
    assert calls == ["transfer", "start"]


def test_a_failure_before_the_source_is_touched_says_so(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.begin("vm1", plan="p", source="vmx:x", target="local")
    with pytest.raises(StepFailed) as failed:
        run_steps("vm1", _steps([], fail_at="preflight"), None, store)
    assert not failed.value.source_touched


SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from migrator.cutover.pipeline import Step, run_steps
    from migrator.cutover.state import StateStore
    store = StateStore(Path(sys.argv[1]))
    store.begin("vm1", plan="p", source="s", target="t")
    log = Path(sys.argv[1]) / "calls.log"
    def make(name):
        def run(_ctx):
            with open(log, "a") as f:
                f.write(name + "\\n")
        return Step(name=name, run=run, summary=name)
    run_steps("vm1", [make(n) for n in ("a", "b", "c")], None, store)
    """
)


@pytest.mark.parametrize("kill_after", ["a", "b"])
def test_kill_9_between_steps_resumes_without_redoing(tmp_path: Path, kill_after: str) -> None:
    script = tmp_path / "pipeline.py"
    script.write_text(SCRIPT)
    env = {"PATH": "/usr/bin:/bin", **kill_after_step_env(kill_after)}
    first = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env)
    assert first.returncode == -9
    second = subprocess.run([sys.executable, str(script), str(tmp_path)], env={"PATH": "/usr/bin:/bin"})
    assert second.returncode == 0
    assert (tmp_path / "calls.log").read_text().split() == ["a", "b", "c"]


def test_status_command_reports_json_and_table(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.begin("vm1", plan="p", source="vmx:x", target="local")
    run_steps("vm1", _steps([]), None, store)
    store.set_fact("vm1", "source_off_at", 100.0)
    store.set_fact("vm1", "target_running_at", 112.5)
    store.set_fact("vm1", "target_verified_at", 120.0)
    store.set_status("vm1", "completed")
    out = subprocess.run(
        [str(MIGRATOR), "status", "--vm", "vm1", "-o", "json", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(out.stdout)
    assert report["status"] == "completed"
    # the downtime lasts until the target is verified, not merely Running; both figures are named
    assert report["downtime_seconds"] == 20.0 and report["downtime_to_verified_seconds"] == 20.0
    assert report["downtime_to_running_seconds"] == 12.5 and report["downtime_to_source_back_seconds"] is None
    assert [s["step"] for s in report["steps"]] == ["preflight", "poweroff", "transfer", "start"]
    table = subprocess.run(
        [str(MIGRATOR), "status", "--state-dir", str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    assert "vm1" in table and "completed" in table and "20.0s (until target verified)" in table


def test_status_output_formats_and_long_names(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    long_name = "a-virtual-machine-with-a-name-well-over-thirty-two-characters"
    for name in ("vm1", long_name):
        store.begin(name, plan="p", source="vmx:x", target="local:/srv/out")
    store.close()

    def status(*args: str) -> str:
        return subprocess.run(
            [str(MIGRATOR), "status", "--state-dir", str(tmp_path), *args], capture_output=True, text=True, check=True
        ).stdout

    table = status().splitlines()
    assert table[0].split()[:3] == ["VM", "STATUS", "STEP"]
    assert any(line.startswith(long_name + "  ") for line in table)  # the long name whole, its columns after it
    assert "TARGET" not in table[0] and "TARGET" in status("-o", "wide").splitlines()[0]
    assert status("--no-headers").splitlines()[0].startswith("vm1 ")
    assert status("-o", "name").split() == ["vm1", long_name]
    assert [r["vm"] for r in yaml.safe_load(status("-o", "yaml"))] == ["vm1", long_name]
    assert [r["vm"] for r in json.loads(status("-o", "json"))] == ["vm1", long_name]


def test_interrupted_cutover_says_where_it_stands(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.begin("vm1", plan="p", source="vmx:x", target="local")
    store.step_started("vm1", "transfer")
    store.set_fact("vm1", "source_off_at", 100.0)
    store.set_status("vm1", "interrupted")
    migration = store.get("vm1")
    assert migration is not None
    assert migration.where == "source is off, interrupted in step transfer: re-run to resume, or roll back"
    assert migration.downtime_seconds is None and migration.source_off_since == 100.0


def test_status_of_an_unknown_vm_is_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(MIGRATOR), "status", "--vm", "nope", "--state-dir", str(tmp_path)], capture_output=True, text=True
    )
    assert out.returncode != 0
    assert out.stderr.count("\n") == 1 and "nope" in out.stderr


def test_status_steps_line_up_whatever_the_step_names(tmp_path: Path) -> None:
    """`status --vm`: a step name longer than 12 characters (convert-guest) pushed its row out of the column."""
    store = StateStore(tmp_path)
    store.begin("vm1", plan="p", source="vmx:x", target="local")
    steps = [Step(name=n, run=lambda _ctx: StepResult(), summary=n) for n in ("preflight", "convert-guest", "start")]
    run_steps("vm1", steps, None, store)
    out = subprocess.run(
        [str(MIGRATOR), "status", "--vm", "vm1", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("  ")]
    assert [row.split()[0] for row in rows] == ["preflight", "convert-guest", "start"], out
    assert len({row.index("done") for row in rows}) == 1, out
