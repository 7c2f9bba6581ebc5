"""The abuse limiters count an IPv6 client per network (a /64 by default), an IPv4 client per address."""

from __future__ import annotations

import pytest

from airdisplay.access import ConnectionLimiter, RateLimiter
from airdisplay.access._limits import DEFAULT_IPV6_PREFIX, client_key
from tests.conftest import FakeClock


@pytest.mark.parametrize(
    ("client", "prefix", "key"),
    [
        ("203.0.113.7", 64, "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 48, "2001:db8:1::/48"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 128, "2001:db8:1:2:aaaa:bbbb:cccc:dddd/128"),
        ("fe80::1%eth0", 64, "fe80::/64"),
        # A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d: they stay one per address.
        ("::ffff:198.51.100.4", 64, "198.51.100.4"),
        ("key:k1", 64, "key:k1"),
        ("unknown", 64, "unknown"),
    ],
)
def test_a_client_is_counted_under_its_address_or_its_ipv6_network(client, prefix, key):
    assert client_key(client, prefix) == key


def test_the_default_ipv6_network_is_a_64():
    assert DEFAULT_IPV6_PREFIX == 64
    assert RateLimiter(60, 1).ipv6_prefix == 64 and ConnectionLimiter(1).ipv6_prefix == 64


def test_addresses_of_one_ipv6_64_share_one_bucket():
    clock = FakeClock(1000.0)
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock)
    first, second, third = (f"2001:db8:aa:bb::{n:x}" for n in (1, 0xBEEF, 0xFFFF))
    assert limiter.hit(first).allowed and limiter.hit(second).allowed
    refused = limiter.hit(third)
    assert not refused.allowed and refused.retry_after == pytest.approx(1.0)
    assert limiter.hit("2001:db8:aa:bc::1").allowed, "the next /64 is another client"
    clock.now += 1.0
    assert limiter.hit(third).allowed and not limiter.hit(first).allowed


def test_ipv4_neighbours_keep_a_bucket_each():
    limiter = RateLimiter(per_minute=60, burst=1, clock=FakeClock(1000.0))
    assert all(limiter.hit(f"198.51.100.{n}").allowed for n in range(1, 50))
    assert not limiter.hit("198.51.100.1").allowed
    assert len(limiter) == 49


def test_a_flood_of_addresses_from_one_64_gets_one_burst_and_one_bucket():
    limiter = RateLimiter(per_minute=30, burst=10, clock=FakeClock(1000.0))
    allowed = sum(limiter.hit(f"2001:db8:0:1:{n >> 16:x}:{n & 0xFFFF:x}::1").allowed for n in range(10_000))
    assert allowed == 10 and len(limiter) == 1


def test_a_prefix_of_128_counts_each_ipv6_address():
    limiter = RateLimiter(per_minute=60, burst=1, ipv6_prefix=128, clock=FakeClock(1000.0))
    assert limiter.hit("2001:db8::1").allowed and limiter.hit("2001:db8::2").allowed
    assert not limiter.hit("2001:db8:0:0::1").allowed, "the same address in another spelling"


def test_streams_of_one_ipv6_64_share_one_quota():
    streams = ConnectionLimiter(per_client=2)
    assert streams.acquire("2001:db8:5::1") and streams.acquire("2001:db8:5::2")
    assert not streams.acquire("2001:db8:5::3")
    assert streams.acquire("2001:db8:6::1") and streams.acquire("198.51.100.1")
    streams.release("2001:db8:5::2")
    assert streams.acquire("2001:db8:5::3")
    assert streams.open_streams() == 4


@pytest.mark.parametrize("prefix", [0, 129, -1])
def test_a_prefix_length_outside_1_to_128_is_refused(prefix):
    with pytest.raises(ValueError, match="1 to 128"):
        RateLimiter(60, 1, ipv6_prefix=prefix)
    with pytest.raises(ValueError, match="1 to 128"):
        ConnectionLimiter(1, ipv6_prefix=prefix)


def test_buckets_are_bounded_and_the_least_recently_used_client_is_dropped_first():
    clock = FakeClock(1000.0)
    limiter = RateLimiter(60, 1, max_clients=3, clock=clock)
    for client in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        assert limiter.hit(client).allowed
    assert not limiter.hit("10.0.0.1").allowed  # .1 is now the most recently used, .2 the least
    assert limiter.hit("10.0.0.4").allowed  # a fourth client: .2 is dropped
    assert len(limiter) == 3
    assert not limiter.hit("10.0.0.1").allowed, "a recently used bucket must survive the eviction"
    assert limiter.hit("10.0.0.2").allowed, "a dropped client starts again with a full burst"
