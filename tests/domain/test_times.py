"""The one way a time is written when it leaves the service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from airdisplay.domain import format_time


def test_times_are_written_in_utc_with_z_and_microseconds_only_when_there_are_any():
    assert format_time(datetime(2026, 11, 28, 1, 2, 3, 456789, tzinfo=UTC)) == "2026-11-28T01:02:03.456789Z"
    assert format_time(datetime(2026, 11, 28, 1, 2, 3, tzinfo=UTC)) == "2026-11-28T01:02:03Z"


def test_a_time_with_another_offset_is_written_as_the_same_instant_in_utc():
    plus_two = datetime(2026, 11, 28, 3, 2, 3, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(plus_two) == "2026-11-28T01:02:03Z"


def test_a_time_without_a_zone_is_refused_rather_than_guessed():
    with pytest.raises(ValueError, match="without a zone"):
        format_time(datetime(2026, 11, 28, 1, 2, 3))
