"""Live links to physical banners: at most one per banner, fed with display frames from the event bus.

Failure rules:
- A second connection for a banner replaces the first, which is closed with 4409; only the link that is
  current when it ends marks the banner offline.
- Display frames are versioned by the banner's display version: a device never gets an older display
  after a newer one, and device-side changes (online, ack) send nothing.
- A banner deleted while its device is connected ends the link (4404).
- A new device token ends the link opened with the old one (`revoke`, 4401). Only this process's link:
  a link through another replica lasts until it reconnects.
- One sweeper watches every link for silence (4408) and for frames left unsent (4008), instead of two
  timer tasks a link: at 10,000 links each task and its coroutines were objects the garbage collector
  scanned, and its pauses made the ack p99 (docs/benchmarks/results/devices_gc_profile.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from opentelemetry.trace import SpanContext

from .. import tracing
from ..domain import Banner, Upcoming, format_time
from ..events import EventBus, Published
from ._subscriber import Outgoing, Subscriber
from ._traces import delivered, offered

#: Display frames buffered per device before coalescing; a device needs only the newest display.
DEVICE_SEND_BUFFER = 4


def display_frame(banner: Banner) -> str:
    """What the banner should show now (docs/device-protocol.md)."""
    message = banner.message
    return json.dumps(
        {
            "type": "display",
            "version": banner.display_version,
            "text": message.text if message else None,
            "expires_at": format_time(message.expires_at) if message else None,
        },
        ensure_ascii=False,
    )


def display_frame_with_next(banner: Banner, upcoming: Upcoming | None, slot: timedelta) -> str:
    """`display_frame` with `next`: the booking that shows when this message ends, its text and slot (for
    firmware that asked for it when it connected, `?next=1`); null while none waits, or while its text is
    not known to this link (it comes with the next change that moves the queue)."""
    message = banner.message
    first = banner.queue[0] if banner.queue else None
    following = None
    if first is not None and upcoming is not None and upcoming.booking_id == first.id:
        following = {
            "text": upcoming.text,
            "starts_at": format_time(first.starts_at),
            "expires_at": format_time(first.starts_at + slot),
        }
    return json.dumps(
        {
            "type": "display",
            "version": banner.display_version,
            "text": message.text if message else None,
            "expires_at": format_time(message.expires_at) if message else None,
            "next": following,
        },
        ensure_ascii=False,
    )


class DeviceLink:
    """One connected device: its outbox and when it was last heard from."""

    __slots__ = (
        "banner_id",
        "subscriber",
        "last_heard",
        "replaced",
        "deleted",
        "revoked",
        "timed_out",
        "shown_trace",
        "next_slot",
        "upcoming",
        "next_sent",
    )

    def __init__(
        self,
        banner_id: str,
        coalesce_count: Callable[[], None] | None = None,
        next_slot: timedelta | None = None,
    ) -> None:
        self.banner_id = banner_id
        #: Set for firmware that takes the next booking ahead (`?next=1`): the length of a slot.
        self.next_slot = next_slot
        #: The first waiting booking's text as the last change that moved the queue carried it.
        self.upcoming: Upcoming | None = None
        #: What the last frame said comes next: (booking id, starts at), or None.
        self.next_sent: tuple[str, datetime] | None = None
        self.subscriber = Subscriber(DEVICE_SEND_BUFFER, coalesce_count=coalesce_count)
        #: With tracing on: the display version last written to the device and its delivery span, so
        #: the device's ack of it joins that trace.
        self.shown_trace: tuple[int, SpanContext] | None = None
        self.last_heard = time.monotonic()
        self.replaced = False
        self.deleted = False
        self.revoked = False
        #: Set by the sweeper: nothing heard for longer than the device timeout.
        self.timed_out = False

    def heard(self) -> None:
        self.last_heard = time.monotonic()

    def silent_for(self) -> float:
        return time.monotonic() - self.last_heard

    def show(self, banner: Banner, upcoming: Upcoming | None = None) -> None:
        """Send what the banner should show, if it changed; for firmware that takes the next booking ahead,
        also when only what comes next changed (the same display version again, with a new `next`)."""
        version = banner.display_version
        if self.next_slot is None:
            frame = display_frame(banner)
            resets = False
        else:
            if upcoming is not None:
                self.upcoming = upcoming
            first = banner.queue[0] if banner.queue else None
            if first is None:
                self.upcoming = None
            known = self.upcoming
            if known is None or first is None or known.booking_id != first.id:
                known = None
            following = None if known is None or first is None else (first.id, first.starts_at)
            last = self.subscriber.version_of(self.banner_id)
            if last is not None and (version < last or (version == last and following == self.next_sent)):
                return  # an older display, or nothing new
            resets = version == last
            self.next_sent = following
            frame = display_frame_with_next(banner, known, self.next_slot)
        if self.subscriber.offer(self.banner_id, version, frame, resets=resets) and tracing.enabled:
            offered(self.subscriber, self.banner_id, version, tracing.current())

    def sent(self, item: Outgoing) -> None:
        """`item` was written to the device (called with tracing on)."""
        span = delivered(self.subscriber, item, "device")
        if span is not None:
            self.shown_trace = (item.version, span)

    def ack_trace(self, display_version: int) -> SpanContext | None:
        """The delivery span of the display the device acknowledges, if traced."""
        shown = self.shown_trace
        return shown[1] if shown is not None and shown[0] == display_version else None


class DeviceLinks:
    """The device links of this process, by banner id."""

    def __init__(
        self,
        bus: EventBus,
        *,
        limit: int = 0,
        heartbeat_seconds: float = 30.0,
        stall_seconds: float = 10.0,
        coalesce_count: Callable[[], None] | None = None,
    ) -> None:
        self._coalesce_count = coalesce_count
        self._links: dict[str, DeviceLink] = {}
        #: Links held at most (0: no limit); a banner's new link replacing its old one always fits.
        self.limit = limit
        self.heartbeat_seconds = heartbeat_seconds
        self.stall_seconds = stall_seconds
        self._sweeper: asyncio.Task[None] | None = None
        #: Counts `revoke` calls: a connect that sees it change while checking its token checks again.
        self.revocations = 0
        bus.subscribe(self._on_event)

    def has_room(self, banner_id: str) -> bool:
        """True if a link for the banner fits under the limit; replacing its own link always fits."""
        return not self.limit or len(self._links) < self.limit or banner_id in self._links

    def attach(self, banner_id: str, next_slot: timedelta | None = None) -> DeviceLink:
        """A new link for the banner; an existing one is marked replaced and ended. `next_slot` for firmware
        that takes the next booking ahead (the length of a slot)."""
        old = self._links.get(banner_id)
        if old is not None:
            old.replaced = True
            old.subscriber.close()
        link = self._links[banner_id] = DeviceLink(banner_id, self._coalesce_count, next_slot)
        return link

    def revoke(self, banner_id: str) -> None:
        """The banner's device token was replaced: the link opened with the old one ends (4401)."""
        self.revocations += 1
        link = self._links.get(banner_id)
        if link is not None:
            link.revoked = True
            link.subscriber.close()

    def detach(self, link: DeviceLink) -> bool:
        """Forget the link; True if it was still the banner's current link (then the banner goes offline)."""
        link.subscriber.close()
        if self._links.get(link.banner_id) is link:
            del self._links[link.banner_id]
            return True
        return False

    def __len__(self) -> int:
        return len(self._links)

    def __contains__(self, banner_id: object) -> bool:
        """True while the banner has a link in this process."""
        return banner_id in self._links

    def start(self) -> None:
        """Start the sweeper (in the running event loop)."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="device-link sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    def sweep_once(self) -> None:
        """End the links silent for longer than the heartbeat timeout, and those whose frames have waited
        unsent for longer than the stall limit (their device stopped reading)."""
        heartbeat, stall = self.heartbeat_seconds, self.stall_seconds
        now = time.monotonic()
        for link in list(self._links.values()):
            if now - link.last_heard > heartbeat:
                link.timed_out = True
                link.subscriber.close()
            elif link.subscriber.stalled_for() > stall:
                link.subscriber.overflow()

    async def _sweep(self) -> None:
        # A quarter of the shorter limit (at most 5 s): a link ends at most 25% past its limit, as before.
        period = min(self.heartbeat_seconds / 4, self.stall_seconds / 4, 5.0)
        while True:
            await asyncio.sleep(period)
            self.sweep_once()

    def _on_event(self, event: Published) -> None:
        link = self._links.get(event.banner_id)
        if link is None:
            return
        banner = event.change.banner
        if banner is None:
            link.deleted = True
            link.subscriber.close()
        else:
            link.show(banner, event.change.upcoming)
