"""What the end-to-end tests share: the real `migrator` CLI run as a subprocess against a simulator, with a
state and a runtime directory of the test's own and nothing of the caller's MIGRATOR_* environment.

Used by tests/cutover's `Run` (one VM) and tests/migrate's `Estate` (several); not a test module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from migrator import simulator

MIGRATOR = Path(sys.executable).parent / "migrator"


@dataclass
class MigratorRun:
    """The CLI as a user runs it on ``sim``, its state under ``base``."""

    sim: simulator.Simulator
    base: Path

    @property
    def out(self) -> Path:
        return self.base / "out"

    @property
    def runtime_dir(self) -> Path:
        return self.base / "runtime"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_")}
        env.update(
            MIGRATOR_VSPHERE_PASSWORD=self.sim.password,
            MIGRATOR_STATE_DIR=str(self.base / "state"),
            MIGRATOR_RUNTIME_DIR=str(self.runtime_dir),
            MIGRATOR_SKIP_CONVERSION="1",  # the tiny guest is virtio-ready and has no OS for virt-v2v
        )
        env.update(extra)
        return env

    def migrator(self, *args: str, timeout: float = 900, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(MIGRATOR), *args], capture_output=True, text=True, timeout=timeout, env=self.env(**extra)
        )

    def popen(self, *args: str, **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(MIGRATOR), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env(**extra)
        )
