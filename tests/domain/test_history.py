"""Reading stored history entries: each with its banner's id, whatever the stored bytes hold."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from airdisplay.domain import Ended, HistoryEntry, stored_entries


def test_stored_entries_are_read_with_their_banners_ids_in_order():
    stored = [
        ("b1", b'{"message_id":"m1","text":"Hello \\"you\\" \xc3\xa9","ended":"expired"}'),
        ("b2", '{"message_id":"m2","text":"<b>plain</b>","shown_at":"2026-11-30T14:03:00Z"}'),
    ]
    first, second = stored_entries(stored)
    assert first == HistoryEntry(banner_id="b1", message_id="m1", text='Hello "you" é', ended=Ended.EXPIRED)
    assert second.banner_id == "b2" and second.text == "<b>plain</b>"
    assert second.shown_at == datetime(2026, 11, 30, 14, 3, tzinfo=UTC)


def test_the_banner_id_given_wins_over_one_stored_and_trailing_space_is_no_matter():
    stored = [("b1", b'{"message_id":"m1","text":"t","banner_id":"someone else"}\n ')]
    assert [entry.banner_id for entry in stored_entries(stored)] == ["b1"]


def test_no_entries_and_a_broken_entry():
    assert stored_entries([]) == []
    with pytest.raises(ValidationError):
        stored_entries([("b1", b'{"text":"no message id"}')])
