"""The shared core's small helpers: the poll helper, quantities, disk target names."""

from __future__ import annotations

import time

import pytest

from core.devices import disk_target_name
from core.quantity import parse_quantity
from core.wait import wait_until


def test_wait_until_returns_the_first_truthy_value() -> None:
    answers = iter([None, 0, "", "ready", "later"])
    assert wait_until(lambda: next(answers), timeout=5, interval=0.001) == "ready"


def test_wait_until_gives_up_after_the_timeout_with_a_last_look() -> None:
    calls: list[float] = []

    def never() -> bool:
        calls.append(time.monotonic())
        return False

    started = time.monotonic()
    assert wait_until(never, timeout=0.2, interval=0.05) is None
    assert 0.2 <= time.monotonic() - started < 1.0
    assert calls[-1] - started >= 0.2  # one more look at the deadline
    assert wait_until(lambda: True, timeout=0, interval=1) is True  # always looked at once


def test_wait_until_ends_at_once_when_the_check_raises() -> None:
    def failed() -> bool:
        raise RuntimeError("phase Failed")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="phase Failed"):
        wait_until(failed, timeout=30, interval=1)
    assert time.monotonic() - started < 1


def test_parse_quantity_is_the_kubernetes_clients() -> None:
    assert parse_quantity("2Gi") == 2 * 2**30
    assert parse_quantity(" 500M ") == 500 * 10**6
    assert parse_quantity(1048576) == 1048576
    for bad in ("lots", "", True, None):
        with pytest.raises(ValueError):
            parse_quantity(bad)


def test_disk_target_names() -> None:
    assert [disk_target_name("vd", i) for i in (0, 1, 25, 26, 27, 701, 702)] == [
        "vda",
        "vdb",
        "vdz",
        "vdaa",
        "vdab",
        "vdzz",
        "vdaaa",
    ]
