"""The precopy loop's keep-alives (``SessionKeeper``): one once the session has been idle for the period, none
while rounds use it; a keep-alive the server did not answer is logged, an ended session stops the VM."""

from __future__ import annotations

import logging
import time

import pytest

from core.errors import SourceError, SourceUnreachableError
from migrator.cutover.warm import SessionKeeper


class Changes:
    """The ChangeTracking side the keeper uses: keep_alive, answering as scripted."""

    def __init__(self, *answers: Exception | None) -> None:
        self.answers = list(answers)
        self.calls = 0

    def keep_alive(self) -> None:
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer


def test_a_keep_alive_once_idle_for_the_period_and_none_after_a_round() -> None:
    changes = Changes()
    keeper = SessionKeeper(changes, 0.2)  # type: ignore[arg-type]
    keeper.idle()
    assert changes.calls == 0  # just used
    time.sleep(0.25)
    keeper.idle()
    keeper.idle()
    assert changes.calls == 1  # the keep-alive counts as use
    time.sleep(0.25)
    keeper.used()  # a round ran
    keeper.idle()
    assert changes.calls == 1


def test_an_unanswered_keep_alive_is_logged_and_an_ended_session_stops_the_vm(caplog: pytest.LogCaptureFixture) -> None:
    unanswered = SourceUnreachableError("keep-alive to vc:443 failed: timed out")
    changes = Changes(unanswered, SourceError("the session on vc:443 has ended"))
    keeper = SessionKeeper(changes, 0.0)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        keeper.idle()
    assert "keep-alive to vc:443 failed: timed out" in caplog.text
    with pytest.raises(SourceError, match="has ended"):
        keeper.idle()
