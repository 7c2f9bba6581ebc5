"""How many waiting bookings one client may hold across the fleet (`--bookings-per-client`).

Without it one client could fill every banner's queue. A client is who `AccessControl.who` says (a key,
or the keyed hash of its address or IPv6 network). The count is this process's: a booking is reserved
before its banner's turn, so simultaneous bookings cannot all pass the check, kept while it waits, and let
go once a change of its banner no longer lists it in the queue (it started, was cancelled, missed its slot,
or the banner was deleted). A restarted process, or another replica of a Dapr fleet, starts from nothing:
the quota bounds what one client does through one process, not a durable account.
"""

from __future__ import annotations

from ..domain import BannerChanged


class BookingQuota:
    """Waiting bookings per client, at most `per_client` each (0: no limit)."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self._held: dict[str, int] = {}
        #: Counted bookings by banner: booking id -> who holds it.
        self._by_banner: dict[str, dict[str, str]] = {}

    def held(self, who: str) -> int:
        return self._held.get(who, 0)

    def reserve(self, who: str) -> bool:
        """Take a place for a booking by `who`; False at the limit."""
        if not self.per_client:
            return True
        held = self._held.get(who, 0)
        if held >= self.per_client:
            return False
        self._held[who] = held + 1
        return True

    def release(self, who: str) -> None:
        """Give a reserved place back (the booking showed at once, was refused, or failed)."""
        if not self.per_client:
            return
        held = self._held.get(who, 0) - 1
        if held > 0:
            self._held[who] = held
        else:
            self._held.pop(who, None)

    def waiting(self, who: str, banner_id: str, booking_id: str) -> None:
        """A reserved place now holds booking `booking_id` on the banner. (Should the booking have left the
        queue already, the banner's next change gives the place back.)"""
        if self.per_client:
            self._by_banner.setdefault(banner_id, {})[booking_id] = who

    def banner_changed(self, change: BannerChanged) -> None:
        """A banner changed: its counted bookings no longer in its queue are let go (all, once deleted).
        Called for every change, so a banner without counted bookings costs one dict lookup."""
        counted = self._by_banner.get(change.banner_id)
        if not counted:
            return
        queue = () if change.banner is None else change.banner.queue
        waiting = {booking.id for booking in queue}
        for booking_id in [b for b in counted if b not in waiting]:
            self.release(counted.pop(booking_id))
        if not counted:
            del self._by_banner[change.banner_id]
