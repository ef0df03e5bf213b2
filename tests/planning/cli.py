"""Run the real `migrator` console script, as a user would."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import PROJECT

MIGRATOR = PROJECT / ".venv" / "bin" / "migrator"


def run_migrator(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "MIGRATOR_VSPHERE_PASSWORD"}
    full_env.update(env or {})
    return subprocess.run(
        [str(MIGRATOR), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode not in (0, 3), result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("error: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
