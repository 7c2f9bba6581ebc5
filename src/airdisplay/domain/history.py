"""What a banner showed: one entry per message, from when it showed until it ended and why (issue 15).

An entry is written by the turn that shows the message (who sent it, when it was asked for, when it
showed) and completed by the turn that ends it (when, how) and the one in which the device acknowledged
it. A booking skipped because its whole slot passed while the service was down is an entry too, `missed`,
never shown. Refused submits and cancelled bookings showed nothing and are not history.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict

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


def shown_entry(message: Message, by: str | None, requested_at: datetime) -> bytes:
    """The entry of a message that shows from now on, as its record's JSON, built by hand: every submit
    writes one (json.dumps of the whole entry was 2.2% of a submit's samples, bench/submit_vs_bare.py
    --profile)."""
    shown = format_time(message.shown_at)
    requested = shown if requested_at == message.shown_at else format_time(requested_at)
    return b'{"message_id":"%s","text":%s,"by":%s,"requested_at":"%s","shown_at":"%s"}' % (
        message.id.encode(),
        json.dumps(message.text, ensure_ascii=False).encode(),
        b"null" if by is None else json.dumps(by).encode(),
        requested.encode(),
        shown.encode(),
    )


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


def ended_patch(ended: Ended, at: datetime) -> bytes:
    """The merge patch that completes a shown message's entry when it ends."""
    return b'{"ended_at":"%s","ended":"%s"}' % (format_time(at).encode(), ended.value.encode())


def acked_patch(at: datetime) -> bytes:
    return b'{"acked_at":"%s"}' % format_time(at).encode()


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of history entries and the cursor of the next page (None on the last)."""

    items: list[HistoryEntry]
    next: str | None
