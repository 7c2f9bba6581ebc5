"""One subscriber's bounded outbox: ordered while it keeps up, coalesced when it falls behind.

Failure rules:
- `offer` never blocks and never awaits: the publishing turn is not slowed by any subscriber.
- Per banner, versions only go up: an offer at or below the newest version already queued or sent for
  that banner is dropped (a `created` event starts the id's versions again).
- When the outbox holds more than `limit` frames, it keeps only the newest frame per banner (lossless for
  state), so a client that falls behind costs at most one frame per watched banner.
- The subscriber overflows (`take` raises SubscriberOverflow, the connection is closed, the client resumes
  by reconnecting) when its frames have waited longer than `stall_seconds` without the sender taking any
  (the client stopped reading), or when even coalesced it holds more than `max_pending` distinct banners
  (only possible on the legacy all-banners stream).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from typing import NamedTuple


class Outgoing(NamedTuple):
    """A frame to send; `banner_id` is None for control frames."""

    banner_id: str | None
    version: int
    frame: str


class SubscriberOverflow(RuntimeError):
    """Raised when a subscriber cannot keep up even with coalesced state."""


class SubscriberClosed(RuntimeError):
    """Raised when taking frames from a subscriber that was closed."""


class SubscriberState(enum.Enum):
    """OPEN -> CLOSED, or OPEN -> OVERFLOWED -> CLOSED."""

    OPEN = "open"
    OVERFLOWED = "overflowed"
    CLOSED = "closed"


#: Frames buffered per connection before coalescing. 256 covers a burst on every banner of a 24-card page
#: many times over; memory stays ~256 shared frame references per connection.
DEFAULT_SEND_BUFFER = 256
#: A client whose frames wait this long unsent has stopped reading (TCP buffers full): cut it off.
DEFAULT_STALL_SECONDS = 10.0
#: Distinct banners one subscriber may have pending even after coalescing.
DEFAULT_MAX_PENDING = 10_000


class Subscriber:
    """Frames waiting to be sent to one client; banner frames are versioned, control frames are not."""

    __slots__ = (
        "limit",
        "max_pending",
        "state",
        "coalesced",
        "_banners",
        "_control",
        "_versions",
        "_ready",
        "_ended",
        "_waiting_since",
    )

    def __init__(self, limit: int = DEFAULT_SEND_BUFFER, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.limit = limit
        self.max_pending = max(limit, max_pending)
        #: Monotonic time since when queued frames have waited for the sender, None when none wait.
        self._waiting_since: float | None = None
        self.state = SubscriberState.OPEN
        self.coalesced = 0
        self._banners: deque[Outgoing] = deque()
        self._control: deque[str] = deque()
        self._versions: dict[str, int] = {}
        self._ready = asyncio.Event()
        self._ended = asyncio.Event()

    def knows(self, banner_id: str, version: int) -> None:
        """The client already has `version` of the banner: skip it and anything older."""
        if version > self._versions.get(banner_id, -1):
            self._versions[banner_id] = version

    def version_of(self, banner_id: str) -> int | None:
        """The newest version queued or sent for the banner (or declared known), if any."""
        return self._versions.get(banner_id)

    def forget(self, banner_id: str) -> None:
        """Stop tracking the banner (unsubscribed); queued frames for it are dropped."""
        self._versions.pop(banner_id, None)
        if any(item.banner_id == banner_id for item in self._banners):
            self._banners = deque(item for item in self._banners if item.banner_id != banner_id)

    def offer(self, banner_id: str, version: int, frame: str, *, resets: bool = False) -> bool:
        """Queue a banner frame unless the client has it or something newer; True if queued."""
        if self.state is not SubscriberState.OPEN:
            return False
        if not resets and version <= self._versions.get(banner_id, -1):
            return False
        self._versions[banner_id] = version
        self._banners.append(Outgoing(banner_id, version, frame))
        if len(self._banners) > self.limit:
            self._coalesce()
        self._wake()
        return True

    def _wake(self) -> None:
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
        self._ready.set()

    def control(self, frame: str) -> None:
        """Queue a control frame (ack, ping, error); sent before pending banner frames."""
        if self.state is SubscriberState.OPEN:
            self._control.append(frame)
            self._wake()

    def _coalesce(self) -> None:
        newest: dict[str | None, Outgoing] = {}
        for item in self._banners:
            newest.pop(item.banner_id, None)  # re-insert so the order follows each banner's newest frame
            newest[item.banner_id] = item
        self._banners = deque(newest.values())
        self.coalesced += 1
        if len(self._banners) > self.max_pending:
            self.overflow()

    def overflow(self) -> None:
        """Give up on this client: drop its frames and end it (the connection closes with 4008)."""
        if self.state is SubscriberState.OPEN:
            self.state = SubscriberState.OVERFLOWED
            self._banners.clear()
            self._control.clear()
            self._ready.set()
            self._ended.set()

    def stalled_for(self) -> float:
        """Seconds that queued frames have waited for the sender (0 when nothing waits)."""
        return 0.0 if self._waiting_since is None else time.monotonic() - self._waiting_since

    async def take(self) -> list[Outgoing]:
        """Wait for frames and return all that are queued, control frames first."""
        while not (self._control or self._banners):
            if self.state is SubscriberState.OVERFLOWED:
                raise SubscriberOverflow("the client could not keep up with coalesced state")
            if self.state is SubscriberState.CLOSED:
                raise SubscriberClosed("the subscriber is closed")
            self._ready.clear()
            await self._ready.wait()
        frames = [Outgoing(None, 0, frame) for frame in self._control]
        frames.extend(self._banners)
        self._control.clear()
        self._banners.clear()
        self._waiting_since = None
        return frames

    def close(self) -> None:
        if self.state is SubscriberState.OPEN:
            self.state = SubscriberState.CLOSED
        self._banners.clear()
        self._control.clear()
        self._ready.set()
        self._ended.set()

    async def ended(self) -> SubscriberState:
        """Wait until the subscriber overflows or is closed (even while its sender is stuck in a send)."""
        await self._ended.wait()
        return self.state

    @property
    def pending(self) -> int:
        return len(self._banners) + len(self._control)
