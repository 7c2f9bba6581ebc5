"""How a time is written wherever it leaves the service: UTC, ISO 8601, `Z` (docs/realtime.md)."""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(value: datetime) -> str:
    """`2026-11-28T01:02:03.456789Z`: seconds always, microseconds when there are any, as Pydantic writes
    the models' own times, so hand-built frames and problem bodies read the same as banner bodies."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(f"a time without a zone is ambiguous: {value!r}")
    if offset:
        value = value.astimezone(UTC)
    return value.isoformat()[:-6] + "Z"  # a UTC time's isoformat ends in "+00:00"
