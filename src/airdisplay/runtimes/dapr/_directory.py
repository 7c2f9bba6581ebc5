"""The fleet directory for the Dapr runtime: banner ids and latest states in Redis, for paging and search.

Dapr actor state cannot be listed or searched, so the directory is written by the banner actor itself, in
each turn that changed the banner, after the state is saved and before the caller gets the answer. It
does not depend on pub/sub: no replayed, repeated or reordered event can move it.

Convergence: each write carries the banner's stamp, (created_at in microseconds, version). The created_at
tells one life of an id from the next (a banner deleted and registered again starts at version 1 again),
the version orders the changes of one life. A write older than the stamp already stored is ignored, and a
deletion leaves its stamp behind as a tombstone, so a late write of the deleted life cannot bring it back.
Tombstones are one short hash field per deleted id; they are never removed.

Reads of one banner always go to its actor. The directory trails the actor only when a replica dies
between saving a turn's state and writing here: the banner's next change brings it level.

Keys (one Redis, not a cluster: the script touches them all):
- `airdisplay:banners` sorted set of ids (ZRANGEBYLEX pages in id order at any fleet size);
- `airdisplay:banner-names` sorted set of "<lower name>\\0<id>", for prefix search by name;
- `airdisplay:banner-states` hash id -> the banner's public JSON;
- `airdisplay:banner-stamps` hash id -> "<created_us>:<version>:<lower name>" (live or deleted);
- `airdisplay:banner-expiries` sorted set id -> expires_at of the message showing (for the sweep);
- `airdisplay:holds:<who>` sorted set of a client's booking holds by their end (_holds.py);
- `airdisplay:secret:<name>` random bytes every replica shares (`shared_secret`: the client hash key).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import redis.asyncio as redis

from ...domain import Banner
from ._history import RedisHistory
from ._holds import RedisHolds

IDS_KEY = "airdisplay:banners"
NAMES_KEY = "airdisplay:banner-names"
STATES_KEY = "airdisplay:banner-states"
STAMPS_KEY = "airdisplay:banner-stamps"
EXPIRIES_KEY = "airdisplay:banner-expiries"
#: Secrets every replica must share (`shared_secret`), one string key each.
SECRET_KEY_PREFIX = "airdisplay:secret:"
#: Name matches read per search page: searches are for people typing, a few thousand matches is plenty.
NAME_WINDOW = 5000
#: Connections to Redis per replica. A wave of activations (each compares its stamp, _actor.py) needs many
#: at once: past the limit a call waits for a free one (up to POOL_WAIT seconds) instead of failing with
#: "Too many connections", which redis-py's default pool did in bench/dapr_compare.py's restart wave.
POOL_SIZE = 100
POOL_WAIT = 10.0

#: KEYS: ids, names, states, stamps, expiries. ARGV: id, created_us, version, lower name, banner JSON
#: ('' for a deletion), expires_at epoch seconds ('' when no message shows). Returns 1 if written.
_RECORD = """
local id, created, version, name = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local old = redis.call('HGET', KEYS[4], id)
if old then
  local c, v, n = string.match(old, '^(%d+):(%d+):(.*)$')
  c, v = tonumber(c), tonumber(v)
  if c > created or (c == created and v >= version) then return 0 end
  redis.call('ZREM', KEYS[2], n .. '\\0' .. id)
end
redis.call('HSET', KEYS[4], id, ARGV[2] .. ':' .. ARGV[3] .. ':' .. name)
if ARGV[5] == '' then
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[5], id)
  return 1
end
redis.call('ZADD', KEYS[1], 0, id)
redis.call('ZADD', KEYS[2], 0, name .. '\\0' .. id)
redis.call('HSET', KEYS[3], id, ARGV[5])
if ARGV[6] == '' then
  redis.call('ZREM', KEYS[5], id)
else
  redis.call('ZADD', KEYS[5], ARGV[6], id)
end
return 1
"""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def stamp_of(created_at: datetime) -> int:
    """The life part of a banner's stamp: its registration time in whole microseconds since the epoch
    (integer arithmetic: the same time always gives the same number)."""
    return (created_at - _EPOCH) // timedelta(microseconds=1)


class RedisDirectory:
    """Ids, names and latest public states of all banners, shared by every replica."""

    def __init__(self, url: str) -> None:
        pool = redis.BlockingConnectionPool.from_url(url, max_connections=POOL_SIZE, timeout=POOL_WAIT)
        self._redis = redis.Redis(connection_pool=pool)
        self._record = self._redis.register_script(_RECORD)
        #: The fleet's history, in the same Redis (_history.py).
        self.history = RedisHistory(self._redis)
        #: The booking quota's holds, in the same Redis (_holds.py).
        self.holds = RedisHolds(self._redis)

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose(close_connection_pool=True)

    async def put(self, banner: Banner) -> bool:
        """Record a banner's new state unless a newer one (or its deletion) is recorded; True if written."""
        expires = "" if banner.message is None else repr(banner.message.expires_at.timestamp())
        life = stamp_of(banner.created_at)
        return await self._write(banner.id, life, banner.version, banner.name, banner, expires)

    async def delete(self, banner_id: str, life: int, version: int, name: str) -> bool:
        """Record that the life `life` (`stamp_of(created_at)`) of `banner_id` ended at `version`."""
        return await self._write(banner_id, life, version, name, None, "")

    async def _write(
        self,
        banner_id: str,
        life: int,
        version: int,
        name: str,
        banner: Banner | None,
        expires: str,
    ) -> bool:
        written = await self._record(
            keys=[IDS_KEY, NAMES_KEY, STATES_KEY, STAMPS_KEY, EXPIRIES_KEY],
            args=[
                banner_id,
                life,
                version,
                name.lower(),
                "" if banner is None else banner.model_dump_json(),
                expires,
            ],
        )
        return bool(written)

    async def recorded(self, banner_id: str) -> tuple[int, int, str, bool] | None:
        """The stamp recorded for `banner_id`: (created_us, version, lower name, live), or None if never."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(STAMPS_KEY, banner_id)
            pipe.hexists(STATES_KEY, banner_id)
            raw, live = await pipe.execute()
        if raw is None:
            return None
        created, version, name = _text(raw).split(":", 2)
        return int(created), int(version), name, bool(live)

    async def overdue(self, before: float, limit: int) -> list[Banner]:
        """Banners whose message was due to expire before `before` (epoch seconds), soonest first."""
        ids = await self._redis.zrangebyscore(EXPIRIES_KEY, "-inf", before, start=0, num=limit)
        return await self._states([_text(i) for i in ids if isinstance(i, bytes | str)])

    async def page(self, after: str | None, limit: int, search: str | None = None) -> list[Banner]:
        ids: list[str]
        if not search:
            raw = await self._redis.zrangebylex(
                IDS_KEY, f"({after}" if after else "-", "+", start=0, num=limit
            )
            ids = [_text(i) for i in raw]
        else:
            prefix = search.lower()
            low = f"({after}" if after and after >= prefix else f"[{prefix}"
            by_id = await self._redis.zrangebylex(IDS_KEY, low, f"[{prefix}\U0010ffff", start=0, num=limit)
            # Names sort by name, not id: read a generous window of name matches and page them by id.
            by_name = await self._redis.zrangebylex(
                NAMES_KEY, f"[{prefix}", f"[{prefix}\U0010ffff", start=0, num=NAME_WINDOW
            )
            found = {_text(i) for i in by_id} | {_text(n).rsplit("\0", 1)[1] for n in by_name}
            ids = sorted(i for i in found if after is None or i > after)[:limit]
        return await self._states(ids)

    async def _states(self, ids: list[str]) -> list[Banner]:
        if not ids:
            return []
        states = await self._redis.hmget(STATES_KEY, ids)
        return [Banner.model_validate_json(raw) for raw in states if raw is not None]

    async def shared_secret(self, name: str, size: int) -> bytes:
        """`size` random bytes under `name`, the same for every replica: the first to ask makes them (SET NX),
        the others read what it made. Never changed once made."""
        key = f"{SECRET_KEY_PREFIX}{name}"
        await self._redis.set(key, secrets.token_bytes(size), nx=True)
        value = await self._redis.get(key)
        if not isinstance(value, bytes) or len(value) != size:
            raise ValueError(f"Redis key {key} does not hold {size} bytes; delete it to make a new secret")
        return value

    async def try_lock(self, name: str, holder: str, seconds: float) -> bool:
        """Take a lock named `name` for `seconds` unless someone holds it (SET NX PX); True if taken."""
        return bool(await self._redis.set(f"airdisplay:lock:{name}", holder, nx=True, px=int(seconds * 1000)))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
