"""Fault injection for the tests, installed in a child process from the outside (the product reads nothing).

``kill_after_step_env(step)`` is what to add to the environment of a subprocess (the CLI, a script) that
should kill -9 itself right after the pipeline records ``step`` done: this folder first on PYTHONPATH, so
the child's interpreter imports ``sitecustomize`` from here at start-up, which registers a
``migrator.cutover.pipeline.STEP_DONE_OBSERVERS`` entry (``kill_at_v2v_phase_env``: a
``converters.guest.convert.PHASE_OBSERVERS`` entry; ``kill_in_round_env``: a
``migrator.cutover.precopy.COPY_OBSERVERS`` entry).
"""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
KILL_AFTER_STEP = "TESTS_FAULT_KILL_AFTER_STEP"
KILL_AT_V2V_PHASE = "TESTS_FAULT_KILL_AT_V2V_PHASE"
KILL_IN_ROUND = "TESTS_FAULT_KILL_IN_ROUND"


def _python_path() -> str:
    return os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)


def kill_after_step_env(step: str) -> dict[str, str]:
    return {"PYTHONPATH": _python_path(), KILL_AFTER_STEP: step}


def kill_at_v2v_phase_env(phase: str) -> dict[str, str]:
    """For a child that should kill -9 itself when virt-v2v announces a phase starting with ``phase``."""
    return {"PYTHONPATH": _python_path(), KILL_AT_V2V_PHASE: phase}


def kill_in_round_env(number: int, copied: int) -> dict[str, str]:
    """For a child that should kill -9 itself once a disk's copy in warm round ``number`` has written ``copied``
    bytes (in the middle of that round's copy, after its snapshot is recorded)."""
    return {"PYTHONPATH": _python_path(), KILL_IN_ROUND: f"{number}:{copied}"}
