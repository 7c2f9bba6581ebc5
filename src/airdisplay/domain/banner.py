"""The banner and its message: models and rules, pure code without I/O or clocks of its own."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

import regex
from pydantic import BaseModel, ConfigDict

from .content import is_invisible
from .exceptions import (
    BannerBusy,
    BannerOffline,
    IdempotencyKeyReused,
    InvalidBannerId,
    InvalidBannerName,
    InvalidMessageText,
    UnknownDisplayVersion,
    VersionMismatch,
)

#: Lowercase letters, digits and inner hyphens: safe in a URL path without escaping, 1..64 characters.
BANNER_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
_BANNER_ID = re.compile(BANNER_ID_PATTERN)

#: A typical towed LED banner shows about this many characters legibly; operators may configure it.
#: Characters are user-perceived ones (grapheme clusters): a flag, `e` with an accent, a conjunct are one.
DEFAULT_MAX_TEXT_LENGTH = 64
#: Code points that may join the first one of a character: combining marks, an emoji modifier, conjoining
#: jamo, the rest of a conjunct. Real writing stays within 8: the most is a Sanskrit conjunct of five
#: consonants in Devanagari (r-t-s-n-y, four viramas: 8), then Tibetan stacks and pointed Hebrew with
#: cantillation (4); NFC composes Latin, Greek and Cyrillic accents into one code point. "Zalgo" text stacks
#: dozens, drawing over the lines around it, and makes one character of what shows as many.
MAX_MARKS_PER_CHARACTER = 8
_CHARACTER = regex.compile(r"\X")
#: A code point that may join its neighbour into one character (UAX #29: all that are not "Other").
_JOINS = regex.compile(r"\P{Grapheme_Cluster_Break=Other}")
#: The product promise: a message shows for one minute.
DEFAULT_DISPLAY_SECONDS = 60.0
#: Bookings a banner holds when the operator does not say otherwise (`--queue-length`): ten minutes of
#: messages (domain/bookings.py).
DEFAULT_QUEUE_LENGTH = 10
MAX_NAME_LENGTH = 100
#: Idempotency keys remembered per banner: enough for client retries, small enough to keep state tiny.
SUBMISSION_LOG_SIZE = 16
#: How long a retry with the same Idempotency-Key returns the original result (Stripe keeps 24 h).
SUBMISSION_LOG_TTL = timedelta(hours=24)


class Message(BaseModel):
    """A message on a banner: shown at `shown_at`, gone at `expires_at`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    text: str
    shown_at: datetime
    expires_at: datetime


class QueuedBooking(BaseModel):
    """A booking waiting on the banner, as everyone may see it: its id and when it starts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    starts_at: datetime


class DeviceState(BaseModel):
    """What the physical banner last reported: reachable or not, and which display version it shows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    online: bool = False
    last_seen: datetime | None = None
    displayed_version: int | None = None


class Banner(BaseModel):
    """A physical banner as the service knows it.

    `version` grows by one with every change of any kind; `display_version` only when what the banner
    should display changes (a message shown, expired or cleared). The device acknowledges display
    versions, so its own changes (going online, acks) never make a shown message look unsent.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    message: Message | None = None
    version: int = 1
    display_version: int = 1
    device: DeviceState = DeviceState()
    #: Bookings waiting for the message to end, in the order they start (domain/bookings.py).
    queue: tuple[QueuedBooking, ...] = ()
    created_at: datetime
    updated_at: datetime

    def showing(self, now: datetime) -> Message | None:
        """The message still on display at `now`, if any."""
        if self.message is not None and now < self.message.expires_at:
            return self.message
        return None


class Submission(BaseModel):
    """A successful submit remembered under its Idempotency-Key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    text: str
    at: datetime
    result: Banner


class KeptAnswer(Protocol):
    """The first answer to an idempotent request, kept under its Idempotency-Key for retries."""

    @property
    def key(self) -> str: ...
    @property
    def at(self) -> datetime: ...


_A = TypeVar("_A", bound=KeptAnswer)


def find_answer(kept: Iterable[_A], key: str, now: datetime) -> _A | None:
    """The answer kept under `key`, unless it is older than SUBMISSION_LOG_TTL."""
    for answer in kept:
        if answer.key == key and now - answer.at < SUBMISSION_LOG_TTL:
            return answer
    return None


def keep_answer(kept: tuple[_A, ...], answer: _A) -> tuple[_A, ...]:
    """`kept` with `answer` last, less any answer of its key or past SUBMISSION_LOG_TTL, the newest
    SUBMISSION_LOG_SIZE at most (for submits, `SubmissionLog`, and bookings, `BookingQueue.receipts`)."""
    newer = [a for a in kept if a.key != answer.key and answer.at - a.at < SUBMISSION_LOG_TTL]
    newer.append(answer)
    return tuple(newer[-SUBMISSION_LOG_SIZE:])


class SubmissionLog(BaseModel):
    """The last few idempotent submits of one banner, newest last."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entries: tuple[Submission, ...] = ()

    def find(self, key: str, now: datetime) -> Submission | None:
        return find_answer(self.entries, key, now)

    def record(self, entry: Submission) -> SubmissionLog:
        return SubmissionLog(entries=keep_answer(self.entries, entry))


@dataclass(frozen=True, slots=True)
class BannerRules:
    """The configurable limits of a fleet."""

    max_text_length: int = DEFAULT_MAX_TEXT_LENGTH
    display_seconds: float = DEFAULT_DISPLAY_SECONDS
    #: Refuse messages for a banner whose device is offline (default: accept; it catches up on reconnect).
    refuse_offline: bool = False
    #: Bookings one banner holds behind its message; 0 turns booking off.
    queue_length: int = DEFAULT_QUEUE_LENGTH

    def __post_init__(self) -> None:
        if self.max_text_length < 1:
            raise ValueError("max_text_length must be at least 1")
        if not self.display_seconds > 0:
            raise ValueError("display_seconds must be positive")
        if self.queue_length < 0:
            raise ValueError("queue_length must be 0 (booking off) or more")

    def clean_text(self, raw: str) -> str:
        """Trim and NFC-normalise the text, and check that a banner can show it; raise InvalidMessageText."""
        text = unicodedata.normalize("NFC", raw).strip()
        if not text:
            raise InvalidMessageText("message text is empty")
        if not text.isprintable():
            raise InvalidMessageText("message text holds control or other non-printable characters")
        if len(text) > self.max_text_length * (MAX_MARKS_PER_CHARACTER + 1):
            # Too many characters or too many marks on one, whichever: no need to segment a long text.
            raise InvalidMessageText(
                f"message text is far too long: a banner shows at most {self.max_text_length} characters"
            )
        if not text.isascii() and is_invisible(text):  # printable ASCII always shows something
            raise InvalidMessageText("message text has nothing visible: only blank or invisible characters")
        # Printable ASCII never joins (CR LF, its one cluster, is not printable): the common case skips the
        # regex, which cost 12% of a submit's CPU in the server (py-spy, bench/submit_vs_bare.py --profile).
        if text.isascii() or _JOINS.search(text) is None:
            count, heaviest = len(text), 0  # each code point is a character: skip segmenting (~0.5 us each)
        else:
            characters = _CHARACTER.findall(text)
            count, heaviest = len(characters), max(len(character) for character in characters) - 1
        if heaviest > MAX_MARKS_PER_CHARACTER:
            raise InvalidMessageText(
                f"a character of the message text carries {heaviest} combining marks; "
                f"a banner shows at most {MAX_MARKS_PER_CHARACTER} per character"
            )
        if count > self.max_text_length:
            raise InvalidMessageText(
                f"message text has {count} characters; a banner shows at most {self.max_text_length}"
            )
        return text


def check_banner_id(raw: str) -> str:
    """Return `raw` if it is a valid banner id; raise InvalidBannerId otherwise."""
    if not _BANNER_ID.match(raw):
        raise InvalidBannerId(
            f"banner id {raw!r} is not a slug: use 1-64 lowercase letters, digits and inner hyphens"
        )
    return raw


def clean_name(raw: str) -> str:
    """Trim a banner name and check it; raise InvalidBannerName if it cannot be used."""
    name = raw.strip()
    if not name:
        raise InvalidBannerName("banner name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidBannerName(f"banner name has {len(name)} characters; the limit is {MAX_NAME_LENGTH}")
    if not name.isprintable():
        raise InvalidBannerName("banner name holds control or other non-printable characters")
    return name


def register_banner(banner_id: str, name: str, now: datetime) -> Banner:
    """A newly registered banner, free and at version 1."""
    return Banner(id=check_banner_id(banner_id), name=clean_name(name), created_at=now, updated_at=now)


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    """What a submit did, as its caller sees it: the banner after it, and whether it replayed an earlier
    result. The idempotency log it updated is the actor's business and stays there (SubmitDecision)."""

    banner: Banner
    replayed: bool
    #: The banner as JSON (`model_dump_json`), when the runtime has it already: the bytes it stored.
    banner_json: bytes | None = None

    @property
    def json(self) -> bytes:
        """The banner as JSON: the stored bytes when there are some, else serialised now."""
        if self.banner_json is not None:
            return self.banner_json
        return self.banner.model_dump_json().encode()


@dataclass(frozen=True, slots=True)
class SubmitDecision:
    """What `submit_message` decided: the banner after it, the idempotency log to store, and whether it
    replayed an earlier result."""

    banner: Banner
    log: SubmissionLog
    replayed: bool


def submit_message(
    banner: Banner,
    log: SubmissionLog,
    raw_text: str,
    *,
    now: datetime,
    rules: BannerRules,
    message_id: str,
    idempotency_key: str | None = None,
    expected_version: int | None = None,
) -> SubmitDecision:
    """Put a message on the banner unless one is showing.

    Order of checks: a retry with a known Idempotency-Key returns the original result (even if the banner
    moved on since); then the text; then If-Match; then the one-message-at-a-time rule.
    """
    if idempotency_key is not None:
        earlier = log.find(idempotency_key, now)
        if earlier is not None:
            # Compared as stored (NFC, trimmed), before today's rules: a retry gets what was accepted.
            if earlier.text != unicodedata.normalize("NFC", raw_text).strip():
                raise IdempotencyKeyReused(idempotency_key)
            return SubmitDecision(earlier.result, log, replayed=True)
    text = rules.clean_text(raw_text)
    if expected_version is not None and expected_version != banner.version:
        raise VersionMismatch(banner.id, expected_version, banner.version)
    if rules.refuse_offline and not banner.device.online:
        raise BannerOffline(banner.id)
    showing = banner.showing(now)
    if showing is not None:
        # Free once the bookings waiting behind the message have had their turns too.
        free_at = showing.expires_at
        if banner.queue:
            free_at = banner.queue[-1].starts_at + timedelta(seconds=rules.display_seconds)
        raise BannerBusy(banner.id, free_at)
    message = Message(
        id=message_id,
        text=text,
        shown_at=now,
        expires_at=now + timedelta(seconds=rules.display_seconds),
    )
    updated = updated_banner(
        banner,
        message=message,
        version=banner.version + 1,
        display_version=banner.display_version + 1,
        updated_at=now,
    )
    if idempotency_key is not None:
        log = log.record(Submission(key=idempotency_key, text=text, at=now, result=updated))
    return SubmitDecision(updated, log, replayed=False)


def expire_message(banner: Banner, message_id: str, now: datetime) -> Banner | None:
    """Take message `message_id` off the banner; None when it is no longer there (expiry is idempotent)."""
    if banner.message is None or banner.message.id != message_id:
        return None
    return _without_message(banner, now)


def clear_message(banner: Banner, now: datetime) -> Banner | None:
    """Take whatever message is on the banner off it early; None when the banner is already free."""
    if banner.message is None:
        return None
    return _without_message(banner, now)


def _without_message(banner: Banner, now: datetime) -> Banner:
    return updated_banner(
        banner,
        message=None,
        version=banner.version + 1,
        display_version=banner.display_version + 1,
        updated_at=now,
    )


def updated_banner(banner: Banner, **changes: object) -> Banner:
    """`banner` with `changes`, validated: ~3x faster than `model_copy(update=...)` for a banner here
    (1.3 us against 3.8 us; expiry is the hot path), since the values it keeps are already models and
    datetimes, which validation takes as they are."""
    return Banner.model_validate({**banner.__dict__, **changes})


def device_connected(banner: Banner, now: datetime) -> Banner:
    """The banner's device came online. What it last acknowledged still counts as displayed."""
    return _with_device(banner, banner.device.model_copy(update={"online": True, "last_seen": now}), now)


def device_disconnected(banner: Banner, now: datetime) -> Banner | None:
    """The device went offline (link closed or heartbeats missed); None if it was not online."""
    if not banner.device.online:
        return None
    return _with_device(banner, banner.device.model_copy(update={"online": False, "last_seen": now}), now)


def device_acknowledged(banner: Banner, display_version: int, now: datetime) -> Banner | None:
    """The device shows `display_version`; None when that changes nothing.

    Only an ack that advances the acknowledged version is a change: a repeated or older one (display
    versions never go backwards on a link) is None, so a device alternating two acks writes nothing.
    An ack from a device marked offline still brings it online, without lowering what it acknowledged.
    """
    if display_version < 1 or display_version > banner.display_version:
        raise UnknownDisplayVersion(banner.id, display_version, banner.display_version)
    device = banner.device
    acknowledged = device.displayed_version
    advances = acknowledged is None or display_version > acknowledged
    if device.online and not advances:
        return None
    displayed = display_version if advances else acknowledged
    return _with_device(
        banner,
        device.model_copy(update={"displayed_version": displayed, "online": True, "last_seen": now}),
        now,
    )


def display_status(banner: Banner) -> str:
    """'offline', 'showing' (the device shows what it should) or 'sending' (it has not acknowledged yet)."""
    if not banner.device.online:
        return "offline"
    return "showing" if banner.device.displayed_version == banner.display_version else "sending"


def _with_device(banner: Banner, device: DeviceState, now: datetime) -> Banner:
    return updated_banner(banner, device=device, version=banner.version + 1, updated_at=now)
