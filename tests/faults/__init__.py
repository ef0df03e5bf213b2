"""Fault injection for the tests, installed in a child process from the outside (the product reads nothing).

``kill_after_step_env(step)`` is what to add to the environment of a subprocess (the CLI, a script) that
should kill -9 itself right after the pipeline records ``step`` done: this folder first on PYTHONPATH, so
the child's interpreter imports ``sitecustomize`` from here at start-up, which registers a
``migrator.cutover.pipeline.STEP_DONE_OBSERVERS`` entry.
"""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
KILL_AFTER_STEP = "TESTS_FAULT_KILL_AFTER_STEP"


def kill_after_step_env(step: str) -> dict[str, str]:
    python_path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": python_path, KILL_AFTER_STEP: step}
