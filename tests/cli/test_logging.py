"""-v/-vv logging of the real CLI against the vSphere simulator, and no secret anywhere: not on stdout or
stderr at debug level, not in any file the run wrote (plan, state, caches, log files)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator import simulator

MIGRATOR = Path(sys.executable).parent / "migrator"
PASSWORD = "Ops-Secret-7c41e9-pw"  # distinctive: a grep for it finds only a leak


@pytest.fixture(scope="module")
def secret_sim() -> Iterator[simulator.Simulator]:
    sim = simulator.start(password=PASSWORD)
    try:
        yield sim
    finally:
        sim.stop()


def _env(base: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_")}
    env.update(
        MIGRATOR_STATE_DIR=str(base / "state"),
        XDG_CACHE_HOME=str(base / "cache"),
        XDG_STATE_HOME=str(base / "xdg-state"),
        MIGRATOR_RUNTIME_DIR=str(base / "runtime"),
        **extra,
    )
    return env


def _files_with(base: Path, needle: str) -> list[Path]:
    found = []
    for path in base.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle.encode() in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


def test_vv_plan_prints_debug_lines_and_never_the_password(secret_sim: simulator.Simulator, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.yaml"
    args = ["-vv", "plan", "--source", secret_sim.source_url(), "--insecure", "--output-file", str(plan_file)]
    result = subprocess.run(
        [str(MIGRATOR), *args],
        capture_output=True,
        text=True,
        env=_env(tmp_path, MIGRATOR_VSPHERE_PASSWORD=PASSWORD),
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode in (0, 3), result.stderr
    debug = [line for line in result.stderr.splitlines() if line.startswith("DEBUG ")]
    assert any(line.startswith("DEBUG migrator.planning.planner: plan ") for line in debug), result.stderr[-2000:]
    assert any("INFO migrator.sources.vsphere.source: vSphere:" in line for line in result.stderr.splitlines())
    assert PASSWORD not in result.stdout and PASSWORD not in result.stderr
    assert plan_file.exists() and _files_with(tmp_path, PASSWORD) == []


def test_v_is_info_and_default_is_quiet(secret_sim: simulator.Simulator, tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    base = ["plan", "--source", secret_sim.source_url(), "--insecure", "--password-file", str(password_file)]
    quiet = subprocess.run(
        [str(MIGRATOR), *base, "--output-file", "-", "-o", "name"],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=300,
    )
    assert quiet.returncode in (0, 3), quiet.stderr
    assert not any(line.startswith(("INFO ", "DEBUG ")) for line in quiet.stderr.splitlines())
    info = subprocess.run(
        [str(MIGRATOR), "-v", *base, "--output-file", "-", "-o", "name"],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=300,
    )
    lines = info.stderr.splitlines()
    assert any(line.startswith("INFO ") for line in lines) and not any(line.startswith("DEBUG ") for line in lines)
    assert PASSWORD not in info.stderr and _files_with(tmp_path, PASSWORD) == [password_file]
