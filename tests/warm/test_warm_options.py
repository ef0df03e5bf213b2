"""The warm flags' values: durations and times as a person types them; bad ones are one clear line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.errors import InputError
from migrator.cli.cutover_warm import parse_duration, parse_time


def test_durations() -> None:
    assert parse_duration("5") == 5.0
    assert parse_duration("30s") == 30.0
    assert parse_duration("10m") == 600.0
    assert parse_duration("1h") == 3600.0
    for bad in ("", "5x", "-1", "0", "m"):
        with pytest.raises(InputError, match="--precopy-interval"):
            parse_duration(bad)


def test_times() -> None:
    zone = timezone(timedelta(hours=1))
    now = datetime(2026, 12, 1, 14, 0, tzinfo=zone)
    assert parse_time("2026-12-01T15:30:00Z") == datetime(2026, 12, 1, 15, 30, tzinfo=UTC).timestamp()
    assert parse_time("2026-12-01T15:30+01:00") == datetime(2026, 12, 1, 15, 30, tzinfo=zone).timestamp()
    assert parse_time("16:45", now) == datetime(2026, 12, 1, 16, 45, tzinfo=zone).timestamp()
    with pytest.raises(InputError, match="has passed today"):
        parse_time("09:00", now)
    with pytest.raises(InputError, match="ISO 8601"):
        parse_time("tomorrow")
