"""The booking quota's shared ledger on a real Redis (runtimes/dapr/_holds.py): replicas racing for one
client's places get exactly the limit between them, ended holds do not count, and a client's set goes
with its last hold."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import redis.asyncio as redis

from airdisplay.access import BookingQuota
from airdisplay.runtimes.base import StorageUnavailable
from airdisplay.runtimes.dapr import RedisDirectory
from airdisplay.runtimes.dapr._holds import HOLDS_KEY_PREFIX


async def test_replicas_racing_for_one_clients_places_get_exactly_the_limit(redis_url):
    replicas = [RedisDirectory(redis_url) for _ in range(3)]
    try:
        quotas = [BookingQuota(4, 60.0, d.holds) for d in replicas]
        holds = await asyncio.gather(*(quotas[i % 3].reserve("client:a") for i in range(30)))
        assert sum(h is not None for h in holds) == 4
        assert await replicas[0].holds.held("client:a", time.time()) == 4
        # One replica gives a place back; another may take it.
        await quotas[1].release("client:a", next(h for h in holds if h is not None))
        assert await quotas[2].reserve("client:a") is not None
        assert await quotas[0].reserve("client:a") is None
    finally:
        for d in replicas:
            await d.close()


async def test_a_booking_hold_counts_until_it_ends_and_the_set_goes_with_it(redis_url):
    directory = RedisDirectory(redis_url)
    client = redis.Redis.from_url(redis_url)
    try:
        ledger, now = directory.holds, time.time()
        assert await ledger.take("client:a", "pending:1", now + 120, 1, now)
        await ledger.rename("client:a", "pending:1", "b1/x1", now + 2)
        assert not await ledger.take("client:a", "pending:2", now + 120, 1, now)
        assert await client.zrange(HOLDS_KEY_PREFIX + "client:a", 0, -1) == [b"b1/x1"]
        assert 0 < await client.ttl(HOLDS_KEY_PREFIX + "client:a") <= 3
        assert await ledger.take("client:a", "pending:3", now + 120, 1, now + 3)  # b1/x1 has ended
        await ledger.drop("client:a", ["pending:3"])
        assert not await client.exists(HOLDS_KEY_PREFIX + "client:a")
    finally:
        await client.aclose()
        await directory.close()


async def test_with_redis_down_a_place_cannot_be_taken_and_the_booking_is_refused_as_unavailable():
    """No Redis on the port: taking a place raises StorageUnavailable (a 503 at the edge), so nothing is
    booked past a quota nobody could check."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    directory = RedisDirectory(f"redis://127.0.0.1:{port}/0")
    try:
        with pytest.raises(StorageUnavailable, match="booking quota"):
            await BookingQuota(3, 60.0, directory.holds).reserve("client:a")
    finally:
        await directory.close()
