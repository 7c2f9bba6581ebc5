"""What a banner showed: one entry per message, from when it showed until it ended and why (issue 15).

An entry is written once, by the turn that ends the message (expired, cleared, deleted), in the same
transaction: the submit path writes nothing of it. While a message shows, what the entry needs beyond
the banner's own state (who sent it, when it was asked for, when the device acknowledged it) is a small
note in the banner's state (`ShowingNote`), and a banner's history lists the message showing now from the
banner and that note. A booking skipped because its whole slot passed while the service was down is an
entry too, `missed`, never shown. Refused submits and cancelled bookings showed nothing and are not
history.

Entries are written as merge patches of what is stored under their id (RFC 7396, null fields left out):
an entry that an earlier version wrote when its message showed is completed, not replaced.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, TypeAdapter

from .banner import Message
from .times import format_time


class Ended(enum.StrEnum):
    """How a message left the banner."""

    EXPIRED = "expired"
    CLEARED = "cleared"
    DELETED = "deleted"
    #: A booking whose slot passed while the service was down: never shown.
    MISSED = "missed"


class HistoryEntry(BaseModel):
    """One message a banner showed (or a booking that missed its slot)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    banner_id: str = ""
    message_id: str
    text: str
    #: Who sent it: `key:<id>` for an API key, else `client:<keyed hash of the address>`; None if unknown.
    by: str | None = None
    #: When it was submitted, or booked.
    requested_at: datetime | None = None
    #: None for a missed booking.
    shown_at: datetime | None = None
    #: None while it shows.
    ended_at: datetime | None = None
    ended: Ended | None = None
    #: When the physical banner acknowledged showing it, if it did.
    acked_at: datetime | None = None
    #: For a missed booking: when its slot began.
    slot_start: datetime | None = None

    @property
    def recorded_at(self) -> datetime:
        """The time its record is kept under (and paged by): when it showed, or for a missed booking when
        its slot began. The runtimes' `_history` writers key records the same way (runtimes/behaviour.py)."""
        at = self.shown_at or self.slot_start
        if at is None:
            raise ValueError(f"history entry {self.message_id} has neither shown_at nor slot_start")
        return at


_ENTRY_LIST = TypeAdapter(list[HistoryEntry])


def stored_entries(stored: Iterable[tuple[str, bytes | str]]) -> list[HistoryEntry]:
    """The entries of (banner id, entry as stored) pairs, each with its banner's id.

    The stored JSON objects are read as one list, each with `"banner_id"` added at its end (where a key
    given twice counts last): one parse for the page instead of a parse and a copy per entry, 0.22 against
    0.46 ms for a page of 100 (bench/history.py `parse_cost`; docs/benchmarks/results/history.md)."""
    parts = []
    for banner_id, value in stored:
        raw = (value.encode() if isinstance(value, str) else value).rstrip()
        parts.append(b'%s,"banner_id":%s}' % (raw[:-1], json.dumps(banner_id).encode()))
    return _ENTRY_LIST.validate_json(b"[" + b",".join(parts) + b"]")


def banner_cursor(at: float, record_id: str) -> str:
    """The opaque cursor of a banner's history page: the last entry's time and id."""
    return f"{at!r}~{record_id}"


def read_banner_cursor(cursor: str) -> tuple[float, str]:
    """ValueError if `cursor` is not one `banner_cursor` made."""
    at, sep, record_id = cursor.partition("~")
    if not sep or not record_id or "~" in record_id or not math.isfinite(float(at)):
        raise ValueError("not a history cursor")
    return float(at), record_id


def fleet_cursor(at: float, banner_id: str, record_id: str) -> str:
    return f"{at!r}~{banner_id}~{record_id}"


def read_fleet_cursor(cursor: str) -> tuple[float, str, str]:
    parts = cursor.split("~")
    if len(parts) != 3 or not all(parts) or not math.isfinite(float(parts[0])):
        raise ValueError("not a history cursor")
    return float(parts[0]), parts[1], parts[2]


class ShowingNote(BaseModel):
    """What the history entry of the message showing now needs beyond the banner: kept in the banner's
    state from when it shows until the turn that ends it writes its entry."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    #: Who sent it (`HistoryEntry.by`).
    by: str | None = None
    #: When it was booked, for a booking (a submit's is when it showed).
    requested_at: datetime | None = None
    acked_at: datetime | None = None


#: What `AccessControl.who` makes (`key:<key id>`, `client:<hex>`): nothing in it needs escaping in JSON.
_PLAIN_WHO = re.compile(r"[A-Za-z0-9:_.-]{1,100}")


def showing_note(by: str | None, requested_at: datetime | None = None) -> bytes:
    """The note of a message that shows from now on, as JSON, built by hand: every submit writes one (a
    submit's, with `by` only, is made once per sender and kept: `_submit_note`)."""
    if requested_at is None and by is not None:
        return _submit_note(by)
    return _note(by, requested_at)


#: Submit notes kept by sender: one Python call a submit instead of four (bench/submit_instructions.py
#: counts the instructions of the whole submit path).
SUBMIT_NOTES_KEPT = 4096


@functools.lru_cache(maxsize=SUBMIT_NOTES_KEPT)
def _submit_note(by: str) -> bytes:
    return _note(by, None)


def _note(by: str | None, requested_at: datetime | None) -> bytes:
    parts = []
    if by is not None:
        plain = _PLAIN_WHO.fullmatch(by) is not None
        parts.append(b'"by":"%s"' % by.encode() if plain else b'"by":%s' % json.dumps(by).encode())
    if requested_at is not None:
        parts.append(b'"requested_at":"%s"' % format_time(requested_at).encode())
    return b"{%s}" % b",".join(parts)


def note_of(stored: bytes | dict[str, object] | None) -> ShowingNote:
    """The note from its stored JSON (bytes, or decoded by Dapr's state manager); empty if none."""
    if stored is None:
        return _NO_NOTE
    if isinstance(stored, bytes):
        return ShowingNote.model_validate_json(stored)
    return ShowingNote.model_validate(stored)


_NO_NOTE = ShowingNote()


def acked_note(note: ShowingNote, at: datetime) -> bytes:
    return note.model_copy(update={"acked_at": at}).model_dump_json(exclude_none=True).encode()


def ended_entry(message: Message, note: ShowingNote, ended: Ended, at: datetime) -> bytes:
    """The whole entry of a message that ended at `at`, as JSON built by hand (it is written for every
    message that ends, in the expiry's batch too); fields it does not know are left out, not null."""
    shown = format_time(message.shown_at)
    parts = [
        b'"message_id":"%s"' % message.id.encode(),
        b'"text":%s' % json.dumps(message.text, ensure_ascii=False).encode(),
    ]
    if note.by is not None:
        parts.append(b'"by":%s' % json.dumps(note.by).encode())
    requested = shown if note.requested_at is None else format_time(note.requested_at)
    parts.append(b'"requested_at":"%s","shown_at":"%s"' % (requested.encode(), shown.encode()))
    parts.append(b'"ended_at":"%s","ended":"%s"' % (format_time(at).encode(), ended.value.encode()))
    if note.acked_at is not None:
        parts.append(b'"acked_at":"%s"' % format_time(note.acked_at).encode())
    return b"{%s}" % b",".join(parts)


def showing_entry(banner_id: str, message: Message, note: ShowingNote) -> HistoryEntry:
    """The entry of the message showing now, not written yet (it is when the message ends)."""
    return HistoryEntry(
        banner_id=banner_id,
        message_id=message.id,
        text=message.text,
        by=note.by,
        requested_at=note.requested_at or message.shown_at,
        shown_at=message.shown_at,
        acked_at=note.acked_at,
    )


def with_showing(
    page: HistoryPage, showing: HistoryEntry | None, before: tuple[float, str] | None, limit: int
) -> HistoryPage:
    """A banner's page of written entries (newest first) with the entry of the message showing now, where
    it belongs: it is the newest, so it leads the first page (and no later one), and the page stays at
    `limit` entries. An entry already written for it (it ended meanwhile) wins."""
    if showing is None or showing.shown_at is None or before is not None:
        return page
    if any(entry.message_id == showing.message_id for entry in page.items):
        return page
    items = [showing, *page.items]
    if len(items) <= limit:
        return HistoryPage(items, page.next)
    last = items[limit - 1]
    return HistoryPage(items[:limit], banner_cursor(last.recorded_at.timestamp(), last.message_id))


def missed_entry(
    message_id: str, text: str, by: str, requested_at: datetime, slot_start: datetime, slot_end: datetime
) -> bytes:
    entry = {
        "message_id": message_id,
        "text": text,
        "by": by,
        "requested_at": format_time(requested_at),
        "ended_at": format_time(slot_end),
        "ended": Ended.MISSED.value,
        "slot_start": format_time(slot_start),
    }
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of history entries and the cursor of the next page (None on the last)."""

    items: list[HistoryEntry]
    next: str | None
