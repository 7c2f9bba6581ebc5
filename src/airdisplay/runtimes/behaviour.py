"""The banner actor's turns, written once against the Dapr-shaped actor API and hosted by every runtime.

A host class mixes this in with its actor base class (ours, or Dapr's) and provides `_state_manager`,
`register_reminder`, `unregister_reminder`, `now()`, `publish()` and `rules`.

A banner is serialised once per change: the banner and the idempotency log are written to state as the
bytes of `model_dump_json` (both state managers store `bytes` as they are, and the bytes equal the
`json.dumps` of `model_dump` written before, so old state loads), and the change event carries the same
bytes on to the stream and device frames and the HTTP reply. Reads take either form: bytes (the embedded
store hands JSON objects back as bytes) through `model_validate_json`, or decoded JSON (Dapr's).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..domain import (
    NO_BOOKINGS,
    Banner,
    BannerAlreadyExists,
    BannerChanged,
    BannerNotFound,
    BannerOffline,
    BannerRules,
    BookingOff,
    BookingQueue,
    BookOutcome,
    ChangeKind,
    DeviceTokenInvalid,
    IdempotencyKeyReused,
    Message,
    SubmissionLog,
    SubmitOutcome,
    Upcoming,
    advance,
    book,
    cancel,
    clear_message,
    device_acknowledged,
    device_connected,
    device_disconnected,
    expire_message,
    register_banner,
    replayed_booking,
    submit_message,
)
from ..domain.history import (
    Ended,
    HistoryEntry,
    ShowingNote,
    acked_note,
    ended_entry,
    missed_entry,
    note_of,
    showing_entry,
    showing_note,
)
from ..logs import about

log = logging.getLogger("airdisplay.banner")

BANNER_KEY = "banner"
SUBMISSIONS_KEY = "submissions"
DEVICE_TOKEN_KEY = "device_token_sha256"
#: The banner's bookings (domain/bookings.py): absent while it has none and no receipts to keep.
BOOKINGS_KEY = "bookings"
#: While a message shows, what its history entry needs beyond the banner (domain/history.py ShowingNote)
#: rides in the banner's own state value, as a last field that is never public: `{...banner,"~showing":
#: {note}}`. A row of its own cost each submit 6-12 us of the writer's CPU (docs/benchmarks/results/
#: bookings_history_cost.md); this costs a byte copy. The public JSON (events, replies) is the part before
#: it; JSON strings escape their quotes, so the marker cannot occur inside one.
NOTE_FIELD = "~showing"
_NOTE_MARK = b',"~showing":'
EXPIRE_REMINDER = "expire"
#: The expiry of a message with bookings waiting behind it: ending it starts the next booking, which its
#: booker expects at that second. The embedded host fires these ahead of plain expiries that fall due
#: together (actors/_scheduler.py, docs/benchmarks/results/booking_switches.md); a runtime whose reminders
#: have no priorities keeps `EXPIRE_REMINDER` for both (`BannerBehaviour.switch_reminder`).
SWITCH_REMINDER = "switch"
#: 32 random bytes: a token nobody guesses, so a plain SHA-256 of it is a safe thing to store.
DEVICE_TOKEN_BYTES = 32
#: A cancel token guards one waiting booking: 16 random bytes are past guessing.
CANCEL_TOKEN_BYTES = 16


class BookingsWaiting(Exception):
    """Raised by `expire_stored` for a message with bookings waiting behind it: its expiry needs a turn."""


@dataclass(frozen=True, slots=True)
class Registration:
    """A new banner and its device token; the token is shown this once and stored only as a hash."""

    banner: Banner
    device_token: str
    #: The banner as JSON, the bytes stored for it, when the runtime has them.
    banner_json: bytes | None = None

    @property
    def json(self) -> bytes:
        """The banner and its token as one JSON object: `{...banner, "device_token": ...}`."""
        banner = self.banner_json if self.banner_json is not None else self.banner.model_dump_json().encode()
        return b'%s,"device_token":%s}' % (banner[:-1], json.dumps(self.device_token).encode())


def banner_of(stored: Any) -> Banner:
    """The banner from its state value: JSON bytes, or the decoded JSON object (its note left out)."""
    if isinstance(stored, bytes):
        return Banner.model_validate_json(split_stored(stored)[0])
    if isinstance(stored, dict) and NOTE_FIELD in stored:
        stored = {k: v for k, v in stored.items() if k != NOTE_FIELD}
    return Banner.model_validate(stored)


def split_stored(stored: bytes) -> tuple[bytes, bytes | None]:
    """A banner's state value as its public JSON and its note's JSON (None without one)."""
    if not stored.endswith(b"}}"):  # the note is an object, last; a banner's last field is a time
        return stored, None
    at = stored.rfind(_NOTE_MARK)
    if at < 0:
        return stored, None
    return stored[:at] + b"}", stored[at + len(_NOTE_MARK) : -1]


def _decoded_note(stored: Any) -> bytes | None:
    """The note's JSON in a banner's decoded state value (Dapr's state manager), if it has one; a value
    in bytes is split by `split_stored`."""
    if isinstance(stored, dict) and isinstance(stored.get(NOTE_FIELD), dict):
        return json.dumps(stored[NOTE_FIELD], separators=(",", ":")).encode()
    return None


#: `_pending_note` when the turn has not changed the note.
_KEPT: Any = object()


def new_device_token() -> tuple[str, str]:
    """A fresh device token and the hash that is stored for it."""
    token = secrets.token_urlsafe(DEVICE_TOKEN_BYTES)
    return token, _token_hash(token)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


#: Message ids name a message on its banner (the expiry reminder matches it); they are public and grant
#: nothing, so they need uniqueness, not secrecy. They come from a per-process generator seeded with
#: 2,496 bytes from os.urandom (and re-seeded in a forked child), not from os.urandom per message:
#: os.urandom lets go of the GIL, and on the submit path getting it back behind the store's writer thread
#: cost 15% of the event loop's time (py-spy, bench/submit_vs_bare.py --profile 10).
_message_ids = random.Random()
os.register_at_fork(after_in_child=_message_ids.seed)


#: The log of a banner that has had no idempotent submit (a frozen model: one is enough for all).
_NO_LOG = SubmissionLog()


def new_message_id() -> str:
    """128 random bits as 32 hex digits, like a uuid4 without the version bits."""
    return f"{_message_ids.getrandbits(128):032x}"


class BannerBehaviour:
    """Turns of one banner actor: register, read, submit, clear, expire, delete."""

    rules: BannerRules
    #: The name of a message's expiry while bookings wait behind it (see SWITCH_REMINDER).
    switch_reminder: str = EXPIRE_REMINDER
    #: The note of the banner the turn loaded (`_loaded`), and the turn's new one (None: gone) or _KEPT.
    _loaded_note: bytes | None = None
    _pending_note: Any = _KEPT

    if TYPE_CHECKING:
        _state_manager: Any
        id: Any

        def now(self) -> float: ...
        def publish(self, event: object) -> None: ...
        async def register_reminder(
            self, name: str, state: bytes, due_time: timedelta, period: timedelta | None = None
        ) -> None: ...
        async def unregister_reminder(self, name: str) -> None: ...
        def _history(self, record_id: str, at: float, value: bytes) -> None:
            """Write a history entry (domain/history.py) with this turn's changes: a merge patch of what
            is stored under `record_id` and `at`, if anything. `at` is the entry's `recorded_at`."""

    # -- turns -------------------------------------------------------------------------------------

    async def register(self, name: str) -> Registration:
        """Create the banner with a fresh device token; BannerAlreadyExists if it is there already."""
        if await self._state_manager.contains_state(BANNER_KEY):
            raise BannerAlreadyExists(str(self.id))
        banner = register_banner(str(self.id), name, self._now())
        token = await self._new_device_token()
        stored = await self._save(banner, ChangeKind.CREATED)
        return Registration(banner, token, stored)

    async def rotate_device_token(self) -> str:
        """Issue a new device token; the old one stops working at once."""
        await self._load()
        return await self._new_device_token()

    async def check_device_token(self, token: str) -> Banner:
        """The banner, if `token` opens its device channel; DeviceTokenInvalid otherwise."""
        banner = await self._load()
        found, stored = await self._state_manager.try_get_state(DEVICE_TOKEN_KEY)
        if not found or not hmac.compare_digest(str(stored), _token_hash(token)):
            raise DeviceTokenInvalid(banner.id)
        return banner

    async def device_online(self) -> Banner:
        banner = await self._load()
        if banner.device.online:  # back within the offline grace (api/routes/devices.py): nothing changed
            return banner
        banner = device_connected(banner, self._now())
        await self._save(banner, ChangeKind.DEVICE_ONLINE)
        return banner

    async def device_offline(self) -> Banner:
        banner = await self._load()
        offline = device_disconnected(banner, self._now())
        if offline is None:
            return banner
        await self._save(offline, ChangeKind.DEVICE_OFFLINE)
        return offline

    async def device_ack(self, display_version: int) -> Banner:
        banner = await self._load()
        now = self._now()
        acknowledged = device_acknowledged(banner, display_version, now)
        if acknowledged is None:
            return banner
        message = banner.message
        if message is not None and display_version == banner.display_version:
            before = banner.device.displayed_version
            if before is None or before < display_version:  # the device shows it from now
                self._pending_note = acked_note(self._note(), now)
        await self._save(acknowledged, ChangeKind.DEVICE_ACKNOWLEDGED)
        return acknowledged

    async def get(self) -> Banner:
        return await self._load()

    async def submit(
        self,
        text: str,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
        by: str | None = None,
    ) -> SubmitOutcome:
        banner = await self._load()
        if banner.queue:
            banner = await self._caught_up(banner)
        found, raw_log = await self._state_manager.try_get_state(SUBMISSIONS_KEY)
        log = _log_of(raw_log) if found else _NO_LOG
        decision = submit_message(
            banner,
            log,
            text,
            now=self._now(),
            rules=self.rules,
            message_id=new_message_id(),
            idempotency_key=idempotency_key,
            expected_version=expected_version,
        )
        if decision.replayed:
            return SubmitOutcome(decision.banner, replayed=True)
        shown = decision.banner
        message = shown.message
        assert message is not None
        await self.register_reminder(
            EXPIRE_REMINDER, message.id.encode(), message.expires_at - shown.updated_at, None
        )
        if decision.log is not log:
            await self._state_manager.set_state(SUBMISSIONS_KEY, decision.log.model_dump_json().encode())
        self._pending_note = showing_note(by)
        stored = await self._save(shown, ChangeKind.MESSAGE_SHOWN)
        return SubmitOutcome(shown, replayed=False, banner_json=stored)

    async def clear(self) -> Banner:
        """Take the message off early; the banner unchanged if it shows none."""
        banner = await self._load()
        now = self._now()
        if banner.queue and banner.message is not None:  # the next booking starts now
            return await self._advance(banner, now, ChangeKind.MESSAGE_CLEARED, cleared_early=True)
        cleared = clear_message(banner, now)
        if cleared is None or banner.message is None:
            return banner
        await self._ended(banner.message, Ended.CLEARED, now)
        await self._disarm_expiry()
        await self._save(cleared, ChangeKind.MESSAGE_CLEARED)
        return cleared

    async def delete(self) -> None:
        """Forget the banner, its idempotency log and its pending expiry."""
        banner = await self._load()
        if banner.message is not None:
            await self._ended(banner.message, Ended.DELETED, min(self._now(), banner.message.expires_at))
        for key in (BANNER_KEY, SUBMISSIONS_KEY, DEVICE_TOKEN_KEY, BOOKINGS_KEY):
            if await self._state_manager.contains_state(key):
                await self._state_manager.remove_state(key)
        await self._disarm_expiry()
        self.publish(BannerChanged(ChangeKind.DELETED, banner.id, banner.version + 1, None, self._now()))

    async def expire(self, message_id: str) -> None:
        """Take message `message_id` off if it is still showing; idempotent, as reminders may repeat."""
        found, raw = await self._state_manager.try_get_state(BANNER_KEY)
        if not found:
            return  # deleted while the expiry was on its way
        banner = self._loaded(raw)
        if banner.queue and banner.message is not None and banner.message.id == message_id:
            await self._advance(banner, banner.message.expires_at, ChangeKind.MESSAGE_EXPIRED)
            return
        expired = expire_message(banner, message_id, self._now())
        if expired is not None and banner.message is not None:
            await self._ended(banner.message, Ended.EXPIRED, banner.message.expires_at)
            await self._save(expired, ChangeKind.MESSAGE_EXPIRED)

    async def book(self, text: str, by: str, idempotency_key: str | None = None) -> BookOutcome:
        """Show `text` now if the banner is free (as a submit), else queue it for the next free slot."""
        rules = self.rules
        if rules.queue_length <= 0:
            raise BookingOff()
        banner = await self._caught_up(await self._load())
        now = self._now()
        queue = await self._bookings()
        as_stored = unicodedata.normalize("NFC", text).strip()
        replay = replayed_booking(queue, idempotency_key, as_stored, now)
        if replay is not None:
            return replay
        if idempotency_key is not None:  # shown at once the first time: the submit's log has it
            found, raw_log = await self._state_manager.try_get_state(SUBMISSIONS_KEY)
            earlier = (_log_of(raw_log) if found else _NO_LOG).find(idempotency_key, now)
            if earlier is not None:
                if earlier.text != as_stored:
                    raise IdempotencyKeyReused(idempotency_key)
                return BookOutcome(shown=SubmitOutcome(earlier.result, replayed=True))
        if banner.showing(now) is None:
            return BookOutcome(shown=await self.submit(text, idempotency_key, by=by))
        clean = rules.clean_text(text)
        if rules.refuse_offline and not banner.device.online:
            raise BannerOffline(banner.id)
        booked, queue, outcome = book(
            banner,
            queue,
            clean,
            now=now,
            rules=rules,
            queue_length=rules.queue_length,
            booking_id=new_message_id(),
            by=by,
            cancel_token=secrets.token_urlsafe(CANCEL_TOKEN_BYTES),
            idempotency_key=idempotency_key,
        )
        if len(queue.entries) == 1 and self.switch_reminder != EXPIRE_REMINDER and banner.message is not None:
            await self._arm_expiry(banner.message, now, queued=True)  # now a switch: see SWITCH_REMINDER
        await self._store_bookings(queue)
        await self._save(booked, ChangeKind.BOOKING_QUEUED, queue)
        return outcome

    async def cancel_booking(self, booking_id: str, token: str | None) -> Banner:
        """Take a waiting booking out of the queue: with its cancel token, or (`token` None) an operator's."""
        banner = await self._caught_up(await self._load())
        updated, queue = cancel(
            banner, await self._bookings(), booking_id, token=token, now=self._now(), rules=self.rules
        )
        await self._store_bookings(queue)
        await self._save(updated, ChangeKind.BOOKING_CANCELLED, queue)
        return updated

    async def bookings(self) -> BookingQueue:
        """The banner's waiting bookings, texts and all (for an operator)."""
        await self._caught_up(await self._load())
        return await self._bookings()

    async def showing(self) -> HistoryEntry | None:
        """The history entry of the message showing now (written once it ends), or None."""
        banner = await self._caught_up(await self._load())
        if banner.showing(self._now()) is None or banner.message is None:
            return None
        return showing_entry(banner.id, banner.message, self._note())

    async def receive_reminder(
        self, name: str, state: bytes, due_time: timedelta, period: timedelta | None
    ) -> None:
        if name in (EXPIRE_REMINDER, SWITCH_REMINDER):
            await self.expire(state.decode())

    @staticmethod
    def expire_stored(
        stored: bytes | None, message_id: str, now: float
    ) -> tuple[bytes, BannerChanged, tuple[str, float, bytes]] | None:
        """`expire` without an actor: from the banner's state value (with its note), its new one, the event
        and the message's history entry (id, time, entry), or None.
        BookingsWaiting when bookings wait behind the message: starting the next one needs a turn.

        For runtimes that expire many banners at once without a turn each. JSON to model and back through
        Pydantic's own parser and serialiser: ~7 us, less than `json.loads` + `json.dumps` of the same
        banner here (~8 us), and the event needs the model anyway.
        """
        if stored is None:
            return None  # deleted while the expiry was on its way
        stored, note = split_stored(stored)
        banner = Banner.model_validate_json(stored)
        if banner.queue and banner.message is not None and banner.message.id == message_id:
            raise BookingsWaiting(banner.id)
        expired = expire_message(banner, message_id, datetime.fromtimestamp(now, UTC))
        if expired is None or banner.message is None:
            return None
        stored_json = expired.model_dump_json().encode()
        event = BannerChanged(
            ChangeKind.MESSAGE_EXPIRED, expired.id, expired.version, expired, expired.updated_at, stored_json
        )
        message = banner.message
        entry = ended_entry(message, note_of(note), Ended.EXPIRED, message.expires_at)
        return stored_json, event, (message.id, message.shown_at.timestamp(), entry)

    # -- internals ---------------------------------------------------------------------------------

    async def _new_device_token(self) -> str:
        token, digest = new_device_token()
        await self._state_manager.set_state(DEVICE_TOKEN_KEY, digest)
        return token

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    async def _ended(self, message: Message, how: Ended, at: datetime) -> None:
        """Write the history entry of `message`, which ended at `at`, and let go of its note."""
        entry = ended_entry(message, self._note(), how, at)
        self._history(message.id, message.shown_at.timestamp(), entry)
        self._pending_note = None

    def _note(self) -> ShowingNote:
        """The note of the message the turn's banner shows (`_loaded`), with the turn's change."""
        pending = self._pending_note
        return note_of(self._loaded_note if pending is _KEPT else pending)

    def _loaded(self, stored: Any) -> Banner:
        """The banner of a state value read at the start of a turn; its note kept for the turn."""
        self._pending_note = _KEPT
        if isinstance(stored, bytes):  # the embedded runtime's value: split once (the submit path)
            public, self._loaded_note = split_stored(stored)
            return Banner.model_validate_json(public)
        self._loaded_note = _decoded_note(stored)
        return banner_of(stored)

    async def _bookings(self) -> BookingQueue:
        found, raw = await self._state_manager.try_get_state(BOOKINGS_KEY)
        if not found:
            return NO_BOOKINGS
        if isinstance(raw, bytes):
            return BookingQueue.model_validate_json(raw)
        return BookingQueue.model_validate(raw)

    async def _store_bookings(self, queue: BookingQueue) -> None:
        if queue.entries or queue.receipts:
            await self._state_manager.set_state(BOOKINGS_KEY, queue.model_dump_json().encode())
        elif await self._state_manager.contains_state(BOOKINGS_KEY):
            await self._state_manager.remove_state(BOOKINGS_KEY)

    async def _caught_up(self, banner: Banner) -> Banner:
        """`banner` with its queue moved on if its message's time is up and the expiry has not come yet
        (a reminder a little late): no call may see a free banner while bookings wait."""
        message = banner.message
        if not banner.queue or message is None or banner.showing(self._now()) is not None:
            return banner
        return await self._advance(banner, message.expires_at, ChangeKind.MESSAGE_EXPIRED)

    async def _advance(
        self, banner: Banner, ended_at: datetime, kind: ChangeKind, *, cleared_early: bool = False
    ) -> Banner:
        """End the message at `ended_at` and start the next booking in the same turn (one write): its
        expiry is armed before the state is saved, as a submit's is. `kind` is the change's when no
        booking is left to start."""
        now = self._now()
        moved = advance(banner, await self._bookings(), ended_at=ended_at, now=now, rules=self.rules)
        if banner.message is not None:
            await self._ended(banner.message, Ended.CLEARED if cleared_early else Ended.EXPIRED, ended_at)
        slot = timedelta(seconds=self.rules.display_seconds)
        for missed, start in moved.missed:
            log.warning(
                "banner %s: booking %s missed its slot (it had passed when the message before it ended)",
                banner.id,
                missed.id,
                extra=about(banner.id),
            )
            entry = missed_entry(missed.id, missed.text, missed.by, missed.booked_at, start, start + slot)
            self._history(missed.id, start.timestamp(), entry)
        message = moved.banner.message
        if message is not None:
            await self._arm_expiry(message, now, queued=bool(moved.queue.entries))
            assert moved.started is not None
            started = moved.started
            self._pending_note = showing_note(started.by, started.booked_at)
        elif cleared_early:
            await self._disarm_expiry()
        await self._store_bookings(moved.queue)
        await self._save(moved.banner, kind if message is None else ChangeKind.MESSAGE_SHOWN, moved.queue)
        return moved.banner

    async def _arm_expiry(self, message: Message, now: datetime, *, queued: bool) -> None:
        """Register the expiry of `message` (shown on a banner with bookings waiting behind it if `queued`),
        taking the other name's registration away (see SWITCH_REMINDER)."""
        name, other = (
            (self.switch_reminder, EXPIRE_REMINDER) if queued else (EXPIRE_REMINDER, self.switch_reminder)
        )
        await self.register_reminder(name, message.id.encode(), message.expires_at - now, None)
        if other != name:
            await self.unregister_reminder(other)

    async def _disarm_expiry(self) -> None:
        await self.unregister_reminder(EXPIRE_REMINDER)
        if self.switch_reminder != EXPIRE_REMINDER:
            await self.unregister_reminder(self.switch_reminder)

    async def _load(self) -> Banner:
        found, raw = await self._state_manager.try_get_state(BANNER_KEY)
        if not found:
            raise BannerNotFound(str(self.id))
        return self._loaded(raw)

    async def _save(self, banner: Banner, kind: ChangeKind, queue: BookingQueue | None = None) -> bytes:
        """Store the banner and publish its change, both with the one serialisation; returns its bytes.
        A turn that moved the queue passes it: the change then carries the next booking's text (`Upcoming`)
        for the banner's device."""
        stored = banner.model_dump_json().encode()
        pending = self._pending_note
        note = self._loaded_note if pending is _KEPT else pending
        if banner.message is None:
            note = None
        self._loaded_note, self._pending_note = note, _KEPT
        value = stored if note is None else b"%s%s%s}" % (stored[:-1], _NOTE_MARK, note)
        await self._state_manager.set_state(BANNER_KEY, value)
        upcoming = None
        if queue is not None and queue.entries:
            first = queue.entries[0]
            upcoming = Upcoming(first.id, first.text)
        self.publish(
            BannerChanged(kind, banner.id, banner.version, banner, banner.updated_at, stored, upcoming)
        )
        return stored


def _log_of(stored: Any) -> SubmissionLog:
    if isinstance(stored, bytes):
        return SubmissionLog.model_validate_json(stored)
    return SubmissionLog.model_validate(stored)
