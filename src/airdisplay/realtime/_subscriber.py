"""One subscriber's bounded outbox: ordered while it keeps up, coalesced when it falls behind.

Failure rules:
- `offer` and `control` never block and never await: the publishing turn is not slowed by any subscriber.
- Per banner, versions only go up: an offer at or below the newest version already queued or sent for
  that banner is dropped (a `created` event starts the id's versions again).
- Everything queued is bounded in bytes (`max_bytes`, counted as the frames' characters: ASCII JSON but
  for banner names and message texts). When the outbox holds more than `limit` banner frames or
  `max_bytes`, it keeps only the newest frame per banner (lossless for state), so a client that falls
  behind costs at most one frame per watched banner.
- A control frame given a `kind` (the `subscribed` list, a ping, a refusal) takes the place of a queued
  one of that kind: only the newest says anything, so a flood of them queues one. Other control frames
  (one error per bad frame) count against the same bound; the stream's frame budget keeps them few.
- `take` hands the sender at most `TAKE_BYTES` at a time (and at least one frame), so what a connection
  holds is its outbox, one batch being sent and the transport's own bounded buffer.
- The subscriber overflows (`take` raises SubscriberOverflow, the connection is closed, the client resumes
  by reconnecting) when its frames have waited longer than `stall_seconds` without the sender taking any
  (the client stopped reading), when even coalesced its frames exceed `max_bytes`, or when it holds more
  than `max_pending` distinct banners (only possible on the legacy all-banners stream).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple


class Outgoing(NamedTuple):
    """A frame to send; `banner_id` is None for control frames."""

    banner_id: str | None
    version: int
    frame: str


#: What a subscriber's banner frames are while there are none.
NO_FRAMES: tuple[()] = ()


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
#: Bytes one subscriber may have queued, counted as characters (len() is O(1); the JSON is ASCII but for
#: names and texts). The coalesced state of the largest subscription, 1,000 banners with 64-character ids
#: and 100-character names, is ~0.76 MB with the default 64-character texts and ~1.7 MB with the longest
#: the service allows (1,000); a `subscribed` list of 1,000 such ids is ~67 KB.
DEFAULT_MAX_BYTES = 2 * 1024 * 1024
#: Most a sender takes at once: asyncio's default write-buffer high-water mark, so a connection holds at
#: most about this much in flight beyond its outbox and its transport's (equally bounded) buffer.
TAKE_BYTES = 64 * 1024


class Subscriber:
    """Frames waiting to be sent to one client; banner frames are versioned, control frames are not."""

    __slots__ = (
        "limit",
        "max_pending",
        "max_bytes",
        "state",
        "coalesced",
        "coalesce_count",
        "notify",
        "_traces",
        "_banners",
        "_control",
        "_serials",
        "_bytes",
        "_coalesce_at",
        "_versions",
        "_ready",
        "_ended",
        "_waiting_since",
    )

    def __init__(
        self,
        limit: int = DEFAULT_SEND_BUFFER,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_bytes: int = DEFAULT_MAX_BYTES,
        coalesce_count: Callable[[], None] | None = None,
    ) -> None:
        self.limit = limit
        #: Called at each coalescing (a metric's counter).
        self.coalesce_count = coalesce_count
        #: Called whenever the outbox gets a frame or ends (closed, overflowed): a sender that does not wait
        #: in `take` starts on it (device links, api/routes/devices.py).
        self.notify: Callable[[], None] | None = None
        #: With tracing on: per banner, the newest traced frame queued (version, trace, when queued, ns).
        self._traces: dict[str, tuple[int, object, int]] | None = None
        self.max_pending = max(limit, max_pending)
        self.max_bytes = max_bytes
        #: Monotonic time since when queued frames have waited for the sender, None when none wait.
        self._waiting_since: float | None = None
        self.state = SubscriberState.OPEN
        self.coalesced = 0
        #: Banner frames queued: a deque while there are any, `NO_FRAMES` while empty (a deque allocates a
        #: 64-slot block at once: 0.7 KB a device link, idle nearly all the time).
        self._banners: deque[Outgoing] | tuple[()] = NO_FRAMES
        #: Queued control frames in order, by kind (str) or by a serial number (int) for kindless ones.
        self._control: dict[str | int, str] = {}
        self._serials = itertools.count()
        #: Characters queued, banner and control frames together.
        self._bytes = 0
        #: Banner frames queued beyond which to coalesce again: twice what the last coalescing kept (at
        #: least `limit`, at most `max_pending`), so a client behind on many banners is not coalesced
        #: again at every frame.
        self._coalesce_at = limit
        self._versions: dict[str, int] = {}
        # Made when something first waits on them: a device link's outbox never waits (its sender starts
        # on `notify`), and two Events are 1.5 KB a link (docs/benchmarks/results/devices.md).
        self._ready: asyncio.Event | None = None
        self._ended: asyncio.Event | None = None

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
            self._bytes = self._count_bytes()

    def offer(self, banner_id: str, version: int, frame: str, *, resets: bool = False) -> bool:
        """Queue a banner frame unless the client has it or something newer; True if queued."""
        if self.state is not SubscriberState.OPEN:
            return False
        if not resets and version <= self._versions.get(banner_id, -1):
            return False
        self._versions[banner_id] = version
        banners = self._banners
        if not isinstance(banners, deque):
            banners = self._banners = deque()
        banners.append(Outgoing(banner_id, version, frame))
        self._bytes += len(frame)
        if len(self._banners) > self._coalesce_at or self._bytes > self.max_bytes:
            self._coalesce()
        self._wake()
        return True

    def trace(self, banner_id: str, version: int, trace: object) -> None:
        """Note the trace of the banner frame just queued (tracing on): its delivery joins that trace."""
        if self._traces is None:
            self._traces = {}
        self._traces[banner_id] = (version, trace, time.time_ns())

    def traced(self, item: Outgoing) -> tuple[object, int] | None:
        """The trace of a banner frame just sent and when it was queued (ns), if it had one."""
        if self._traces is None or item.banner_id is None:
            return None
        found = self._traces.get(item.banner_id)
        if found is None or found[0] > item.version:
            return None
        del self._traces[item.banner_id]
        return (found[1], found[2]) if found[0] == item.version else None

    def control(self, frame: str, kind: str | None = None) -> None:
        """Queue a control frame (ack, ping, error), sent before pending banner frames; one with a `kind`
        replaces a queued frame of that kind."""
        if self.state is not SubscriberState.OPEN:
            return
        key: str | int = next(self._serials) if kind is None else kind
        replaced = self._control.pop(key, None)
        if replaced is not None:
            self._bytes -= len(replaced)
        self._control[key] = frame
        self._bytes += len(frame)
        if self._bytes > self.max_bytes:
            self._coalesce()
        self._wake()

    def _wake(self) -> None:
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
        if self._ready is not None:
            self._ready.set()
        if self.notify is not None:
            self.notify()

    def _coalesce(self) -> None:
        newest: dict[str | None, Outgoing] = {}
        for item in self._banners:
            newest.pop(item.banner_id, None)  # re-insert so the order follows each banner's newest frame
            newest[item.banner_id] = item
        self._banners = deque(newest.values())
        self._bytes = self._count_bytes()
        self._coalesce_at = max(self.limit, min(2 * len(self._banners), self.max_pending))
        self.coalesced += 1
        if self.coalesce_count is not None:
            self.coalesce_count()
        if len(self._banners) > self.max_pending or self._bytes > self.max_bytes:
            self.overflow()

    def _count_bytes(self) -> int:
        return sum(len(item.frame) for item in self._banners) + sum(map(len, self._control.values()))

    def overflow(self) -> None:
        """Give up on this client: drop its frames and end it (the connection closes with 4008)."""
        if self.state is SubscriberState.OPEN:
            self.state = SubscriberState.OVERFLOWED
            self._drop()
            self._set_ended()
            if self.notify is not None:
                self.notify()

    def _drop(self) -> None:
        self._banners = NO_FRAMES
        self._control.clear()
        self._bytes = 0
        self._waiting_since = None

    def stalled_for(self) -> float:
        """Seconds that queued frames have waited for the sender (0 when nothing waits)."""
        return 0.0 if self._waiting_since is None else time.monotonic() - self._waiting_since

    async def take(self, max_bytes: int = TAKE_BYTES) -> list[Outgoing]:
        """Wait for frames and return the oldest, control frames first: at least one, and no more than
        `max_bytes` unless the first frame alone is larger."""
        while not (self._control or self._banners):
            if self.state is SubscriberState.OVERFLOWED:
                raise SubscriberOverflow("the client could not keep up with coalesced state")
            if self.state is SubscriberState.CLOSED:
                raise SubscriberClosed("the subscriber is closed")
            if self._ready is None:
                self._ready = asyncio.Event()
            self._ready.clear()
            await self._ready.wait()
        control, banners = self._control, self._banners
        if self._bytes <= max_bytes:  # everything (the common case: a client that keeps up)
            taken = [Outgoing(None, 0, frame) for frame in control.values()]
            taken.extend(banners)
            control.clear()
            self._banners = NO_FRAMES
            self._bytes = 0
            self._waiting_since = None
            return taken
        taken = []
        size = 0
        while control and (size < max_bytes or not taken):
            frame = control.pop(next(iter(control)))
            taken.append(Outgoing(None, 0, frame))
            size += len(frame)
        while isinstance(banners, deque) and banners and size < max_bytes:
            item = banners.popleft()
            taken.append(item)
            size += len(item.frame)
        self._bytes -= size
        # The sender is making progress: frames still queued wait from now on.
        self._waiting_since = time.monotonic() if (control or banners) else None
        return taken

    def close(self) -> None:
        if self.state is SubscriberState.OPEN:
            self.state = SubscriberState.CLOSED
        self._drop()
        self._set_ended()
        if self.notify is not None:
            self.notify()

    def _set_ended(self) -> None:
        if self._ready is not None:
            self._ready.set()
        if self._ended is not None:
            self._ended.set()

    async def ended(self) -> SubscriberState:
        """Wait until the subscriber overflows or is closed (even while its sender is stuck in a send)."""
        if self.state is SubscriberState.OPEN:
            if self._ended is None:
                self._ended = asyncio.Event()
            await self._ended.wait()
        return self.state

    @property
    def pending(self) -> int:
        return len(self._banners) + len(self._control)

    @property
    def pending_bytes(self) -> int:
        """Characters of the frames queued (what `max_bytes` bounds)."""
        return self._bytes
