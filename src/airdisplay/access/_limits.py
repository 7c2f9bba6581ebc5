"""Abuse limits: a token bucket per client for submits, and a cap on open streams per client.

Hand-written rather than the `limits` library: its memory storages cost 3-8 times as much per `hit` at
1,000 clients (4.7-13 us against 1.6 us), and its asyncio storage scans every key it holds on each expiry
pass, which made one `hit` cost 0.3-0.4 ms with 100,000 clients against 4.1 us for this bucket
(bench/rate_limiter.py; docs/benchmarks/results/rate_limiter.md).
Memory stays bounded: at most `max_clients` buckets, least recently used dropped first; a dropped
bucket was idle the longest, so it had refilled anyway in all but a flood of new addresses.

A client is its address, but an IPv6 client is its /64 (`client_key`): one host or home network holds a
whole /64, so per address one IPv6 client would own 2^64 buckets.
"""

from __future__ import annotations

import math
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

#: Buckets kept at most; ~150 B each, so 100,000 clients cost ~15 MB at worst.
DEFAULT_MAX_CLIENTS = 100_000
#: IPv6 clients are counted per network of this many bits. A /64 is one LAN, the least an ISP gives a
#: subscriber (RFC 6177 advises /48 to /56 for a site), and a host picks new addresses in it at will (SLAAC
#: privacy addresses, RFC 8981); IPv4 stays per address, where a NAT's clients share one anyway.
DEFAULT_IPV6_PREFIX = 64
#: The first 12 bytes of an IPv4-mapped IPv6 address (::ffff:a.b.c.d), how a dual-stack socket sees IPv4.
_V4_MAPPED = bytes(10) + b"\xff\xff"
#: An IPv6 address starts with a hex digit or a colon.
_V6_FIRST = frozenset("0123456789abcdefABCDEF:")


def client_key(client: str, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """The key a limiter counts `client` under: an IPv6 address becomes its network (`2001:db8:1:2::/64`),
    an IPv4-mapped one its IPv4 address; anything else (an IPv4 address, a key id) is its own key."""
    if ":" not in client or client[0] not in _V6_FIRST:
        return client  # IPv4, or a key id: no parse (and no exception) on the hot path
    try:
        packed = socket.inet_pton(socket.AF_INET6, client.partition("%")[0])  # without a zone (fe80::1%eth0)
    except OSError:
        return client  # not an address
    if packed[:12] == _V4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    drop = 128 - ipv6_prefix
    network = (int.from_bytes(packed, "big") >> drop << drop).to_bytes(16, "big")
    return f"{socket.inet_ntop(socket.AF_INET6, network)}/{ipv6_prefix}"


def _check_prefix(ipv6_prefix: int) -> None:
    if not 1 <= ipv6_prefix <= 128:
        raise ValueError(f"an IPv6 prefix length is 1 to 128 bits, not {ipv6_prefix}")


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether a call may go ahead, and if not, in how many seconds it may."""

    allowed: bool
    retry_after: float = 0.0


class RateLimiter:
    """`burst` calls at once, then `per_minute` a minute, for each client (`client_key`)."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        _check_prefix(ipv6_prefix)
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self.ipv6_prefix = ipv6_prefix
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def hit(self, client: str) -> RateDecision:
        """Take one token from the client's bucket if it has one (`client`: an address or a key id)."""
        client = client_key(client, self.ipv6_prefix)
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
    """At most `per_client` open streams (WebSocket, SSE) per client (`client_key`)."""

    def __init__(self, per_client: int, *, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> None:
        if per_client < 1:
            raise ValueError("per_client must be at least 1")
        _check_prefix(ipv6_prefix)
        self.per_client = per_client
        self.ipv6_prefix = ipv6_prefix
        self._open: dict[str, int] = {}

    def acquire(self, client: str) -> bool:
        """Count one more stream for the client; False (nothing counted) when it is at its limit."""
        client = client_key(client, self.ipv6_prefix)
        count = self._open.get(client, 0)
        if count >= self.per_client:
            return False
        self._open[client] = count + 1
        return True

    def release(self, client: str) -> None:
        client = client_key(client, self.ipv6_prefix)
        count = self._open.get(client, 0) - 1
        if count > 0:
            self._open[client] = count
        else:
            self._open.pop(client, None)

    def open_streams(self) -> int:
        return sum(self._open.values())
