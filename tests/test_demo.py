"""`make demo` (``python -m testbed.demo``), end to end, as a person reads it: it plans, cuts the simulator's VM
over to the local runtime, shows the guest's console and the downtime, and stops the VM; each command's lines
in the order the command wrote them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def test_the_demo_runs_and_reads_in_order(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_")} | {"PYTHONPATH": str(PROJECT)}
    done = subprocess.run(
        [sys.executable, "-m", "testbed.demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "# demo complete"
    assert any(line.startswith("cutover of DC0_H0_VM0 completed: dc0-h0-vm0 runs on local:") for line in lines)
    assert any(line.startswith("# downtime ") and "(source off -> target Running)" in line for line in lines)
    stop = lines.index("$ migrator runtime stop dc0-h0-vm0")
    assert lines[stop + 1].startswith("dc0-h0-vm0: ACPI shutdown sent; the guest is destroyed after")
    assert lines[stop + 2] == "dc0-h0-vm0: guest shut down"
    assert (tmp_path / "demo-out" / "dc0-h0-vm0-vm.yaml").is_file()  # where it said, under the working directory
