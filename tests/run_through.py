"""What a banner's history must show once its bookings have run through, crashes or not: the check the
crash tests of both runtimes (tests/test_crash.py, tests/runtimes/dapr/test_real_bookings.py) share."""

from __future__ import annotations

from datetime import datetime


def at(value: str) -> float:
    """Unix seconds of an ISO 8601 time as the API writes it."""
    return datetime.fromisoformat(value).timestamp()


def check_run_through(
    entries: list[dict], bookings: list[dict], slot: float
) -> tuple[list[dict], list[dict]]:
    """Each booking once in the history `entries`, shown or recorded as missed, none lost; a shown one never
    before its slot and ended by its slot's end (lateness never shifts the schedule); no two shown at once.
    Returns (shown, missed) booking entries."""
    by_id: dict[str, dict] = {}
    for entry in entries:
        assert entry["message_id"] not in by_id, f"{entry['message_id']} is in the history twice"
        by_id[entry["message_id"]] = entry
    shown, missed = [], []
    for booking in bookings:
        entry = by_id.get(booking["booking_id"])
        assert entry is not None, f"booking {booking['booking_id']} neither shown nor missed: {entries}"
        if entry["ended"] == "missed":
            missed.append(entry)
            continue
        assert entry["shown_at"] is not None and entry["ended_at"] is not None, entry
        starts = at(booking["starts_at"])
        assert at(entry["shown_at"]) >= starts - 0.001, f"shown before its slot: {entry}"
        assert at(entry["ended_at"]) <= starts + slot + 0.001, f"shown past its slot: {entry}"
        shown.append(entry)
    ran = sorted((e for e in entries if e["shown_at"] is not None), key=lambda e: at(e["shown_at"]))
    for before, after in zip(ran, ran[1:], strict=False):
        assert at(after["shown_at"]) >= at(before["ended_at"]) - 0.001, f"two at once: {before} {after}"
    return shown, missed
