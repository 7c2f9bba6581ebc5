"""The fleet directory for the Dapr runtime: banner ids and latest states in Redis, for paging and search.

Dapr actor state cannot be listed or searched, so every replica keeps this directory up to date from the
banner events it receives (idempotent: the newest version wins) and from its own registrations and
deletions (so a creator sees its banner at once). Ids sit in a sorted set read with ZRANGEBYLEX, which
pages in id order at any fleet size; names in a second set as "<lower name>\\0<id>" for prefix search.
Reads of one banner always go to its actor; this directory may trail it by one event.
"""

from __future__ import annotations

import json

import redis.asyncio as redis

from ...domain import Banner, BannerChanged

IDS_KEY = "airdisplay:banners"
NAMES_KEY = "airdisplay:banner-names"
STATES_KEY = "airdisplay:banner-states"
#: Name matches read per search page: searches are for people typing, a few thousand matches is plenty.
NAME_WINDOW = 5000
#: Write only if newer: KEYS[1] states hash, ARGV id, version, json.
_SET_IF_NEWER = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local v = cjson.decode(old)['version']
  if v and tonumber(v) >= tonumber(ARGV[2]) and ARGV[4] ~= 'created' then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


class RedisDirectory:
    """Ids, names and latest public states of all banners, shared by every replica."""

    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url)
        self._set_if_newer = self._redis.register_script(_SET_IF_NEWER)

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()

    async def apply(self, change: BannerChanged) -> None:
        """Fold one event in (any order of duplicates is fine; a newer version is never overwritten)."""
        if change.banner is None:
            await self.remove(change.banner_id)
        else:
            await self.put(change.banner, created=change.kind.value == "created")

    async def put(self, banner: Banner, *, created: bool = False) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(IDS_KEY, {banner.id: 0})
            pipe.zadd(NAMES_KEY, {f"{banner.name.lower()}\0{banner.id}": 0})
            await pipe.execute()
        await self._set_if_newer(
            keys=[STATES_KEY],
            args=[banner.id, banner.version, banner.model_dump_json(), "created" if created else "changed"],
        )

    async def remove(self, banner_id: str) -> None:
        raw = await self._redis.hget(STATES_KEY, banner_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(IDS_KEY, banner_id)
            if raw is not None:
                name = json.loads(raw)["name"].lower()
                pipe.zrem(NAMES_KEY, f"{name}\0{banner_id}")
            pipe.hdel(STATES_KEY, banner_id)
            await pipe.execute()

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
        if not ids:
            return []
        states = await self._redis.hmget(STATES_KEY, ids)
        return [Banner.model_validate_json(raw) for raw in states if raw is not None]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
