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

_PHASE = os.environ.get("TESTS_FAULT_KILL_AT_V2V_PHASE")

if _PHASE:
    import signal

    import converters.guest.convert as guest_convert

    def _kill_at(phase: str) -> None:
        if phase.startswith(_PHASE):
            os.kill(os.getpid(), signal.SIGKILL)

    guest_convert.PHASE_OBSERVERS.append(_kill_at)

_ROUND = os.environ.get("TESTS_FAULT_KILL_IN_ROUND")

if _ROUND:
    import signal

    from migrator.cutover import precopy

    _number, _, _limit = _ROUND.partition(":")

    def _kill_in_round(number: int, copied: int) -> None:
        if number == int(_number) and copied >= int(_limit):
            os.kill(os.getpid(), signal.SIGKILL)

    precopy.COPY_OBSERVERS.append(_kill_in_round)
