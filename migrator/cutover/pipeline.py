"""Runs a pipeline of steps (data: a tuple of ``Step``) for one VM, durably and resumably.

Each step is idempotent and recorded in the state store before and after it runs. A
re-run skips the steps recorded done and re-runs the one that was under way, which is
safe because every step checks the live state before acting (a power-off of a VM that is
off does nothing; a power-on checks first).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from core.errors import Interrupted, MigratorError
from migrator.cutover.state import Migration, StateStore

log = logging.getLogger(__name__)

Context = TypeVar("Context")

# Called with (vm, step) right after a step is recorded done; nothing is registered in production.
# The tests' fault injection (tests/faults: kill -9 between two steps) registers itself here.
StepObserver = Callable[[str, str], None]
STEP_DONE_OBSERVERS: list[StepObserver] = []


@dataclass(frozen=True)
class StepResult:
    bytes_moved: int = 0
    detail: str | None = None


@dataclass(frozen=True)
class Step(Generic[Context]):
    name: str
    run: Callable[[Context], StepResult | None]
    summary: str
    # Once this step has started, the source has been touched: a failure may be rolled back.
    touches_source: bool = False


class StepFailed(MigratorError):
    def __init__(self, step: str, message: str, *, source_touched: bool) -> None:
        super().__init__(f"step {step} failed: {message}")
        self.step = step
        self.source_touched = source_touched


def run_steps(
    vm: str,
    steps: Sequence[Step[Context]],
    context: Context,
    store: StateStore,
    *,
    announce: Callable[[str], None] = lambda _line: None,
) -> Migration:
    """Run every step not yet recorded done; raise StepFailed (state recorded) on the first failure."""
    touched = False
    for step in steps:
        touched = touched or step.touches_source
        migration = store.get(vm)
        if migration is not None and migration.done(step.name):
            announce(f"{step.name}: already done")
            continue
        announce(f"{step.name}: {step.summary}")
        store.step_started(vm, step.name)
        try:
            result = step.run(context) or StepResult()
        except Interrupted:
            raise  # not a failure: the step stays "started", the caller records the interruption
        except MigratorError as error:
            store.step_failed(vm, step.name, error.message)
            raise StepFailed(step.name, error.message, source_touched=touched) from error
        except Exception as error:  # a bug or an unexpected library error: still recorded, still one line
            message = f"{type(error).__name__}: {error}"
            log.debug("step %s crashed", step.name, exc_info=True)
            store.step_failed(vm, step.name, message)
            raise StepFailed(step.name, message, source_touched=touched) from error
        store.step_done(vm, step.name, bytes_moved=result.bytes_moved, detail=result.detail)
        for observer in STEP_DONE_OBSERVERS:
            observer(vm, step.name)
    migration = store.get(vm)
    assert migration is not None
    return migration
