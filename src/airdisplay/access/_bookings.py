"""How many waiting bookings one client may hold across the fleet (`--bookings-per-client`).

Without it one client could fill every banner's queue. A client is who `AccessControl.who` says (a key,
or the keyed hash of its address or IPv6 network). Each waiting booking is a hold in a ledger
(`HoldLedger`): this process's memory on the embedded runtime, the fleet's Redis on Dapr, so that every
replica counts the same holds (runtimes/dapr/_holds.py).

- A place is taken before the banner's turn (`reserve`), atomically against the limit, so simultaneous
  bookings through any replica cannot all pass the check. It becomes the booking's hold once the banner
  queued it (`waiting`), or is given back (`release`) if the message showed at once or the booking failed.
- The process that took a hold lets it go when a change of its banner no longer lists the booking (it
  started, was cancelled, missed its slot, or the banner was deleted): every replica gets every change.
- Every hold also has an end: a reservation `RESERVATION_SECONDS` after it was taken, a booking `HOLD_GRACE`
  after its slot would end. A hold whose process died (or missed the change) goes then, not never.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Protocol

from ..domain import BannerChanged

log = logging.getLogger("airdisplay.access")

#: How long a place taken for a booking lasts before its banner's turn answered (the turn's own bound is
#: the sidecar's call timeout, 30 s on Dapr).
RESERVATION_SECONDS = 120.0
#: How long after its slot would have ended a booking's hold lasts, if no change let it go before.
HOLD_GRACE = 60.0


class HoldLedger(Protocol):
    """Where the holds of each client are kept: each a name and the time (epoch seconds) it ends by."""

    async def take(self, who: str, hold: str, until: float, limit: int, now: float) -> bool:
        """Add `hold` for `who` unless `who` already has `limit` holds that have not ended; True if added."""
        ...

    async def rename(self, who: str, hold: str, name: str, until: float) -> None:
        """Replace `hold` by `name`, ending at `until`."""
        ...

    async def drop(self, who: str, holds: Sequence[str]) -> None:
        """Remove `holds` of `who` (those that are not there are ignored)."""
        ...


class MemoryHolds:
    """The holds of a process of its own (the embedded runtime): a dict per client, emptied as they go."""

    def __init__(self) -> None:
        self._holds: dict[str, dict[str, float]] = {}

    def held(self, who: str, now: float) -> int:
        return sum(1 for until in self._holds.get(who, {}).values() if until > now)

    async def take(self, who: str, hold: str, until: float, limit: int, now: float) -> bool:
        holds = self._holds.setdefault(who, {})
        for name in [n for n, ends in holds.items() if ends <= now]:
            del holds[name]
        if len(holds) >= limit:
            return False
        holds[hold] = until
        return True

    async def rename(self, who: str, hold: str, name: str, until: float) -> None:
        holds = self._holds.setdefault(who, {})
        holds.pop(hold, None)
        holds[name] = until

    async def drop(self, who: str, holds: Sequence[str]) -> None:
        mine = self._holds.get(who)
        if mine is None:
            return
        for name in holds:
            mine.pop(name, None)
        if not mine:
            del self._holds[who]


class BookingQuota:
    """Waiting bookings per client, at most `per_client` each (0: no limit), in `ledger`."""

    def __init__(
        self,
        per_client: int,
        slot_seconds: float,
        ledger: HoldLedger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.per_client = per_client
        self.slot_seconds = slot_seconds
        self.ledger: HoldLedger = ledger or MemoryHolds()
        self._clock = clock
        #: The bookings this process holds places for, by banner: booking id -> who holds it.
        self._by_banner: dict[str, dict[str, str]] = {}
        self._dropping: set[asyncio.Task[None]] = set()

    async def reserve(self, who: str) -> str | None:
        """Take a place for a booking by `who`: the hold's name, or None at the limit."""
        now = self._clock()
        hold = f"pending:{uuid.uuid4().hex}"
        taken = await self.ledger.take(who, hold, now + RESERVATION_SECONDS, self.per_client, now)
        return hold if taken else None

    async def release(self, who: str, hold: str) -> None:
        """Give a reserved place back (the booking showed at once, was refused, or failed)."""
        await self._drop(who, [hold])

    async def waiting(self, who: str, hold: str, banner_id: str, booking_id: str, starts_at: float) -> None:
        """Reserved place `hold` now holds booking `booking_id` on the banner, which starts at `starts_at`.
        (Should the booking have left the queue already, the banner's next change, or the hold's end, gives
        the place back.)"""
        self._by_banner.setdefault(banner_id, {})[booking_id] = who
        until = starts_at + self.slot_seconds + HOLD_GRACE
        try:
            await self.ledger.rename(who, hold, _booking_hold(banner_id, booking_id), until)
        except Exception as exc:  # the booking stands; its reservation ends by itself, a little early
            log.warning("could not record the booking place of %s: %s", who, exc)

    def published(self, event: Carries) -> None:
        """`banner_changed` as an event bus handler (runtimes/base.py `event_bus`): one Python call a change
        of a banner it holds no places for, the submit path's case."""
        change = event.change
        if change.banner_id in self._by_banner:
            self.banner_changed(change)

    def banner_changed(self, change: BannerChanged) -> None:
        """A banner changed: the bookings this process holds places for and that are no longer in its queue
        are let go (all, once deleted). Called for every change, so a banner without them costs one lookup."""
        counted = self._by_banner.get(change.banner_id)
        if not counted:
            return
        queue = () if change.banner is None else change.banner.queue
        waiting = {booking.id for booking in queue}
        gone: dict[str, list[str]] = {}
        for booking_id in [b for b in counted if b not in waiting]:
            gone.setdefault(counted.pop(booking_id), []).append(_booking_hold(change.banner_id, booking_id))
        if not counted:
            del self._by_banner[change.banner_id]
        for who, holds in gone.items():
            task = asyncio.get_running_loop().create_task(self._drop(who, holds))
            self._dropping.add(task)
            task.add_done_callback(self._dropping.discard)

    async def _drop(self, who: str, holds: Sequence[str]) -> None:
        try:
            await self.ledger.drop(who, holds)
        except Exception as exc:  # they end by themselves (HOLD_GRACE): a ledger down gives places back late
            log.warning("could not give back %d booking places of %s: %s", len(holds), who, exc)


class Carries(Protocol):
    """An event bus's event (events/_frames.py `Published`): the change it carries."""

    @property
    def change(self) -> BannerChanged: ...


def _booking_hold(banner_id: str, booking_id: str) -> str:
    return f"{banner_id}/{booking_id}"
