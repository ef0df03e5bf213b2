"""Imported at interpreter start-up by processes started with ``tests.faults.kill_after_step_env``."""

import os

_STEP = os.environ.get("TESTS_FAULT_KILL_AFTER_STEP")

if _STEP:
    import signal

    from migrator.cutover import pipeline

    def _kill_after(_vm: str, step: str) -> None:
        if step == _STEP:
            os.kill(os.getpid(), signal.SIGKILL)

    pipeline.STEP_DONE_OBSERVERS.append(_kill_after)
