"""Bookings: the next free slots of a busy banner, taken one after another with no gap and no race.

A banner that shows a message may hold a queue of bookings. Booking `n` (from 1) starts when the message
ahead of it ends: the current message's `expires_at` plus `n - 1` message durations, unless one ahead is
cancelled (then the later ones move up) or an operator clears the banner early (then the queue starts at
once). The queue itself (texts, who booked, cancel token hashes) is the actor's state under its own key;
the banner carries only its public outline, `Banner.queue` (ids and start times), which every change
streams to pages and devices.

When a message ends, the turn that ends it starts the next booking (`advance`): its message shows from
the end of the one before (not from when the reminder happened to fire, so reminder lateness never
shifts the schedule), and bookings whose whole slot has passed meanwhile (a server down for minutes) are
skipped as missed, never shown late.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from .banner import (
    Banner,
    BannerRules,
    Message,
    QueuedBooking,
    SubmitOutcome,
    find_answer,
    keep_answer,
    updated_banner,
)
from .exceptions import BookingNotFound, CancelTokenInvalid, IdempotencyKeyReused, QueueFull


class Booking(BaseModel):
    """A booking waiting for its slot."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Public: it names the booking in the queue, and becomes the id of its message once it shows.
    id: str
    text: str
    booked_at: datetime
    #: Who booked: an API key's id (`key:<id>`), or a keyed hash of the client's address; never the address.
    by: str
    #: SHA-256 of the cancel token, which was shown once, to the booker.
    cancel_sha256: str


class BookingReceipt(BaseModel):
    """The first answer to a booking made with an Idempotency-Key, for a retry to get again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    text: str
    at: datetime
    booking_id: str
    position: int
    starts_at: datetime


class BookingQueue(BaseModel):
    """A banner's bookings in the order they start, and the receipts of its idempotent bookings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entries: tuple[Booking, ...] = ()
    receipts: tuple[BookingReceipt, ...] = ()

    def receipt(self, key: str, now: datetime) -> BookingReceipt | None:
        return find_answer(self.receipts, key, now)

    def with_receipt(self, receipt: BookingReceipt) -> tuple[BookingReceipt, ...]:
        return keep_answer(self.receipts, receipt)


NO_BOOKINGS = BookingQueue()


@dataclass(frozen=True, slots=True)
class BookOutcome:
    """What a booking did: showed the message at once (`shown`, answered like a submit), or queued it."""

    shown: SubmitOutcome | None = None
    booking_id: str = ""
    position: int = 0
    starts_at: datetime | None = None
    #: Shown once: None in a replay (only its hash is kept).
    cancel_token: str | None = None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Advanced:
    """The banner after its message ended and the queue moved on (`advance`)."""

    banner: Banner
    queue: BookingQueue
    #: The booking now showing, if one is.
    started: Booking | None
    #: Bookings whose whole slot passed before they could show, in order, with the slot's start.
    missed: tuple[tuple[Booking, datetime], ...]


def cancel_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def outline(
    queue: tuple[Booking, ...], first_start: datetime, rules: BannerRules
) -> tuple[QueuedBooking, ...]:
    """The public outline of `queue` when its first booking starts at `first_start`."""
    slot = timedelta(seconds=rules.display_seconds)
    return tuple(QueuedBooking(id=b.id, starts_at=first_start + i * slot) for i, b in enumerate(queue))


def book(
    banner: Banner,
    queue: BookingQueue,
    text: str,
    *,
    now: datetime,
    rules: BannerRules,
    queue_length: int,
    booking_id: str,
    by: str,
    cancel_token: str,
    idempotency_key: str | None = None,
) -> tuple[Banner, BookingQueue, BookOutcome]:
    """Queue `text` behind the message showing on `banner` (the caller shows it at once when the banner is
    free). `text` is already clean (BannerRules.clean_text). QueueFull when the queue holds `queue_length`."""
    showing = banner.showing(now)
    if showing is None:  # the caller checked; a guard against a free banner gaining a queue
        raise ValueError("a free banner takes a booking as a submit")
    if len(queue.entries) >= queue_length:
        raise QueueFull(banner.id, queue_length, showing.expires_at)
    booking = Booking(id=booking_id, text=text, booked_at=now, by=by, cancel_sha256=cancel_hash(cancel_token))
    entries = (*queue.entries, booking)
    slots = outline(entries, showing.expires_at, rules)
    receipts = queue.receipts
    if idempotency_key is not None:
        receipts = queue.with_receipt(
            BookingReceipt(
                key=idempotency_key,
                text=text,
                at=now,
                booking_id=booking.id,
                position=len(entries),
                starts_at=slots[-1].starts_at,
            )
        )
    updated = updated_banner(banner, queue=slots, version=banner.version + 1, updated_at=now)
    outcome = BookOutcome(
        booking_id=booking.id, position=len(entries), starts_at=slots[-1].starts_at, cancel_token=cancel_token
    )
    return updated, BookingQueue(entries=entries, receipts=receipts), outcome


def replayed_booking(queue: BookingQueue, key: str | None, text: str, now: datetime) -> BookOutcome | None:
    """The first answer again for a retry with a known Idempotency-Key (IdempotencyKeyReused if the text
    differs); None for a new booking. `text` is compared as stored (NFC, trimmed)."""
    if key is None:
        return None
    receipt = queue.receipt(key, now)
    if receipt is None:
        return None
    if receipt.text != text:
        raise IdempotencyKeyReused(key)
    return BookOutcome(
        booking_id=receipt.booking_id, position=receipt.position, starts_at=receipt.starts_at, replayed=True
    )


def advance(
    banner: Banner,
    queue: BookingQueue,
    *,
    ended_at: datetime,
    now: datetime,
    rules: BannerRules,
) -> Advanced:
    """The banner once its message ended at `ended_at`: the next booking whose slot has not wholly passed
    by `now` shows for the rest of its slot; earlier ones are missed; with none left, the banner is free.
    Display and banner versions go up by one either way."""
    slot = timedelta(seconds=rules.display_seconds)
    entries = list(queue.entries)
    missed: list[tuple[Booking, datetime]] = []
    start = ended_at
    while entries:
        booking = entries.pop(0)
        if start + slot <= now:
            missed.append((booking, start))
            start += slot
            continue
        message = Message(id=booking.id, text=booking.text, shown_at=start, expires_at=start + slot)
        rest = tuple(entries)
        shown = updated_banner(
            banner,
            message=message,
            queue=outline(rest, message.expires_at, rules),
            version=banner.version + 1,
            display_version=banner.display_version + 1,
            updated_at=now,
        )
        return Advanced(shown, queue.model_copy(update={"entries": rest}), booking, tuple(missed))
    free = updated_banner(
        banner,
        message=None,
        queue=(),
        version=banner.version + 1,
        display_version=banner.display_version + 1,
        updated_at=now,
    )
    return Advanced(free, queue.model_copy(update={"entries": ()}), None, tuple(missed))


def cancel(
    banner: Banner,
    queue: BookingQueue,
    booking_id: str,
    *,
    token: str | None,
    now: datetime,
    rules: BannerRules,
) -> tuple[Banner, BookingQueue]:
    """Take a booking out of the queue; later ones move up. `token` None: an operator's cancel.
    BookingNotFound if it is not waiting (unknown, already shown or cancelled), CancelTokenInvalid if the
    token is not its own."""
    found = next((b for b in queue.entries if b.id == booking_id), None)
    if found is None:
        raise BookingNotFound(banner.id, booking_id)
    if token is not None and not hmac.compare_digest(cancel_hash(token), found.cancel_sha256):
        raise CancelTokenInvalid(banner.id, booking_id)
    rest = tuple(b for b in queue.entries if b.id != booking_id)
    first_start = banner.message.expires_at if banner.message is not None else now
    updated = updated_banner(
        banner, queue=outline(rest, first_start, rules), version=banner.version + 1, updated_at=now
    )
    return updated, queue.model_copy(update={"entries": rest})
