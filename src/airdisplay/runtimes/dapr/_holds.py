"""The booking quota's holds in the fleet's Redis: every replica counts the same (access/_bookings.py).

One sorted set per client, `airdisplay:holds:<who>`: each member a hold (a reservation, or a waiting
booking as "<banner id>/<booking id>"), scored by the epoch second it ends by. Taking a place is one
script: drop the client's ended holds, count the rest against the limit, add the new one. Redis runs a
script alone, so simultaneous bookings through any replicas cannot pass the check together. The set
expires with its last hold: a client that stops booking leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as redis
from redis.exceptions import RedisError

from ..base import StorageUnavailable

HOLDS_KEY_PREFIX = "airdisplay:holds:"

#: The end of both scripts: the set expires with its last hold, then 1.
_EXPIRE_WITH_LAST = """
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[1], math.ceil(tonumber(last[2])))
return 1
"""

#: KEYS: the client's set. ARGV: now, limit, hold, until. Returns 1 if the hold was added.
_TAKE = (
    """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
"""
    + _EXPIRE_WITH_LAST
)

#: KEYS: the client's set. ARGV: the hold, its new name, until.
_RENAME = (
    """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
"""
    + _EXPIRE_WITH_LAST
)


class RedisHolds:
    """A `HoldLedger` (access/_bookings.py) every replica shares."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._take = client.register_script(_TAKE)
        self._rename = client.register_script(_RENAME)

    async def take(self, who: str, hold: str, until: float, limit: int, now: float) -> bool:
        try:
            taken = await self._take(
                keys=[HOLDS_KEY_PREFIX + who], args=[repr(now), limit, hold, repr(until)]
            )
        except RedisError as exc:  # a 503 at the edge: the quota cannot be checked, so nothing is booked
            raise StorageUnavailable(f"the booking quota (Redis) is unavailable: {exc}") from None
        return bool(taken)

    async def rename(self, who: str, hold: str, name: str, until: float) -> None:
        await self._rename(keys=[HOLDS_KEY_PREFIX + who], args=[hold, name, repr(until)])

    async def drop(self, who: str, holds: Sequence[str]) -> None:
        if holds:
            await self._redis.zrem(HOLDS_KEY_PREFIX + who, *holds)

    async def held(self, who: str, now: float) -> int:
        """Holds of `who` that have not ended (for tests and operators)."""
        return int(await self._redis.zcount(HOLDS_KEY_PREFIX + who, f"({now!r}", "+inf"))
