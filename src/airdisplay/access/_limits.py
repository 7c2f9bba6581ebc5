"""Abuse limits: a token bucket per client for submits, and a cap on open streams per client.

Hand-written rather than the `limits` library: its asyncio memory storage scans every key it holds on
each expiry pass, which made one `hit` cost 112 us with 100,000 clients (3.6 us with 1,000), against
0.5 us for this bucket at any count (measured with limits 5.8.0, 20,000 hits; see the issue 7 notes).
Memory stays bounded: at most `max_clients` buckets, least recently used dropped first; a dropped
bucket was idle the longest, so it had refilled anyway in all but a flood of new addresses.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

#: Buckets kept at most; ~150 B each, so 100,000 clients cost ~15 MB at worst.
DEFAULT_MAX_CLIENTS = 100_000


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether a call may go ahead, and if not, in how many seconds it may."""

    allowed: bool
    retry_after: float = 0.0


class RateLimiter:
    """`burst` calls at once, then `per_minute` a minute, for each client key."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def hit(self, client: str) -> RateDecision:
        """Take one token from the client's bucket if it has one."""
        now = self._clock()
        buckets = self._buckets
        entry = buckets.pop(client, None)
        tokens = self.burst if entry is None else min(self.burst, entry[0] + (now - entry[1]) * self.rate)
        if tokens >= 1.0:
            buckets[client] = (tokens - 1.0, now)
            decision = RateDecision(True)
        else:
            buckets[client] = (tokens, now)
            decision = RateDecision(False, (1.0 - tokens) / self.rate)
        if len(buckets) > self.max_clients:
            buckets.popitem(last=False)
        return decision

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_seconds(decision: RateDecision) -> int:
    """The whole seconds to put in a Retry-After header (at least 1)."""
    return max(1, math.ceil(decision.retry_after))


class ConnectionLimiter:
    """At most `per_client` open streams (WebSocket, SSE) per client key."""

    def __init__(self, per_client: int) -> None:
        if per_client < 1:
            raise ValueError("per_client must be at least 1")
        self.per_client = per_client
        self._open: dict[str, int] = {}

    def acquire(self, client: str) -> bool:
        """Count one more stream for the client; False (nothing counted) when it is at its limit."""
        count = self._open.get(client, 0)
        if count >= self.per_client:
            return False
        self._open[client] = count + 1
        return True

    def release(self, client: str) -> None:
        count = self._open.get(client, 0) - 1
        if count > 0:
            self._open[client] = count
        else:
            self._open.pop(client, None)

    def open_streams(self) -> int:
        return sum(self._open.values())
