"""The booking quota (access/_bookings.py) on its in-memory ledger: places are taken against the limit,
become a booking's hold, go back when the banner's queue no longer lists the booking, and end by
themselves when no change gives them back. A fake clock decides when holds end."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from airdisplay.access import BookingQuota, MemoryHolds
from airdisplay.access._bookings import HOLD_GRACE, RESERVATION_SECONDS
from airdisplay.domain import Banner, BannerChanged, ChangeKind
from airdisplay.domain.banner import QueuedBooking
from airdisplay.events import Published
from tests.conftest import FakeClock, eventually

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SLOT = 60.0


def quota(per_client: int = 2) -> tuple[BookingQuota, MemoryHolds, FakeClock]:
    clock = FakeClock(T0.timestamp())
    ledger = MemoryHolds()
    return BookingQuota(per_client, SLOT, ledger, clock), ledger, clock


def change(banner_id: str, waiting: list[str], version: int = 2) -> BannerChanged:
    queue = tuple(QueuedBooking(id=b, starts_at=T0 + timedelta(minutes=1)) for b in waiting)
    banner = Banner(id=banner_id, name="n", version=version, created_at=T0, updated_at=T0, queue=queue)
    return BannerChanged(ChangeKind.BOOKING_QUEUED, banner_id, version, banner, T0)


async def test_places_are_taken_against_the_limit_and_given_back():
    bookings, ledger, clock = quota(2)
    first, second = await bookings.reserve("client:a"), await bookings.reserve("client:a")
    assert first and second and first != second
    assert await bookings.reserve("client:a") is None
    assert await bookings.reserve("client:b") is not None  # another client has places of its own
    await bookings.release("client:a", first)
    assert ledger.held("client:a", clock()) == 1
    assert await bookings.reserve("client:a") is not None


async def test_a_booking_holds_its_place_until_its_banner_no_longer_lists_it():
    bookings, ledger, clock = quota(2)
    for booking_id in ("x1", "x2"):
        hold = await bookings.reserve("client:a")
        assert hold is not None
        await bookings.waiting("client:a", hold, "b1", booking_id, clock() + 60)
    assert await bookings.reserve("client:a") is None
    bookings.banner_changed(change("b1", ["x1", "x2"]))  # both still wait
    assert ledger.held("client:a", clock()) == 2
    bookings.banner_changed(change("b1", ["x2"], version=3))  # x1 started
    await eventually(lambda: ledger.held("client:a", clock()) == 1, what="x1's place back")
    bookings.banner_changed(BannerChanged(ChangeKind.DELETED, "b1", 4, None, T0))
    await eventually(lambda: ledger.held("client:a", clock()) == 0, what="x2's place back")


async def test_holds_end_by_themselves_when_no_change_gives_them_back():
    """A reservation whose booking never answered, and a booking whose change this process missed (or whose
    process died, on a shared ledger), end after their time: the client is not locked out for good."""
    bookings, ledger, clock = quota(2)
    stuck = await bookings.reserve("client:a")
    booked = await bookings.reserve("client:a")
    assert stuck and booked
    await bookings.waiting("client:a", booked, "b1", "x1", clock() + 300)
    assert await bookings.reserve("client:a") is None
    clock.now += RESERVATION_SECONDS
    assert ledger.held("client:a", clock()) == 1
    clock.now = T0.timestamp() + 300 + SLOT + HOLD_GRACE
    assert ledger.held("client:a", clock()) == 0
    assert await bookings.reserve("client:a") is not None


async def test_as_an_event_bus_handler_it_lets_go_of_places_as_banner_changed_does():
    """`published` takes the bus's event (the change it carries): a change of another banner leaves the
    places alone, one that no longer lists a booking gives its place back."""
    bookings, ledger, clock = quota(2)
    hold = await bookings.reserve("client:a")
    assert hold is not None
    await bookings.waiting("client:a", hold, "b1", "x1", clock() + 60)
    bookings.published(Published(change("b2", [])))
    bookings.published(Published(change("b1", ["x1"])))
    assert ledger.held("client:a", clock()) == 1
    bookings.published(Published(change("b1", [], version=3)))
    await eventually(lambda: ledger.held("client:a", clock()) == 0, what="x1's place back")


async def test_simultaneous_reservations_pass_the_limit_exactly():
    bookings, _, _ = quota(3)
    holds = await asyncio.gather(*(bookings.reserve("client:a") for _ in range(20)))
    assert sum(h is not None for h in holds) == 3


class BrokenLedger(MemoryHolds):
    """Takes places, then fails to record or drop them (a ledger that went away mid-booking)."""

    async def rename(self, who: str, hold: str, name: str, until: float) -> None:
        raise ConnectionError("ledger gone")

    async def drop(self, who: str, holds) -> None:
        raise ConnectionError("ledger gone")


async def test_a_ledger_failing_after_the_place_was_taken_never_fails_the_booking(caplog):
    """The booking stands once its banner queued it: recording its place, or giving one back, is logged
    when it fails, and the place then ends by itself."""
    bookings = BookingQuota(2, SLOT, BrokenLedger(), FakeClock(T0.timestamp()))
    hold = await bookings.reserve("client:a")
    assert hold is not None
    await bookings.waiting("client:a", hold, "b1", "x1", T0.timestamp() + 60)
    await bookings.release("client:a", hold)
    bookings.banner_changed(BannerChanged(ChangeKind.DELETED, "b1", 3, None, T0))
    await eventually(lambda: len(caplog.records) == 3, what="three warnings")
    assert all("ledger gone" in r.getMessage() for r in caplog.records)
