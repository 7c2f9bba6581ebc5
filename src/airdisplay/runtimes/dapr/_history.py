"""Banner history for the Dapr runtime, in the fleet's Redis (domain/history.py has what an entry holds).

Dapr actor state can be neither listed nor queried by time, so history lives beside the fleet directory
(_directory.py), in the Redis the fleet already runs, where sorted sets page by time in O(log n) at any
size and no other server is needed. Its writes must not be lost when a replica dies between saving a turn
and writing here: a turn's records go into the actor's own state first (`OUTBOX_KEY`, saved with the
turn in Dapr's state transaction), then here, and an activation writes the outbox here again. Every write
is idempotent (an entry is merged into what is stored under its id, setting the same fields again), so
writing twice is harmless.

Keys:
- `airdisplay:history:<banner id>` sorted set, all scores 0, members "<time>~<record id>" (the time in
  whole microseconds, 20 digits: lexical order is time order), paged newest first with ZREVRANGEBYLEX;
- `airdisplay:history` the same for the whole fleet, members "<time>~<banner id>~<record id>";
- `airdisplay:history-entries` hash "<banner id>~<record id>" -> the entry's JSON.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as redis

from ...domain import HistoryEntry, HistoryPage, banner_cursor, fleet_cursor, stored_entries

#: State key of a turn's history records not yet known to be in Redis (see the module's docstring).
OUTBOX_KEY = "history_outbox"
FLEET_KEY = "airdisplay:history"
ENTRIES_KEY = "airdisplay:history-entries"
_WIDTH = 20

#: KEYS: banner set, fleet set, entries. ARGV: banner member, fleet member, entry field, JSON, legacy.
#: The JSON's fields are merged into a stored entry of that id (null removing one), or it is stored as it
#: is. ARGV[5] "1": a merge patch written by an older version (an entry completed in steps), which
#: changes nothing when the entry is not there.
_WRITE = """
local old = redis.call('HGET', KEYS[3], ARGV[3])
local value = ARGV[4]
if old then
  local entry = cjson.decode(old)
  for k, v in pairs(cjson.decode(ARGV[4])) do
    if v == cjson.null then entry[k] = nil else entry[k] = v end
  end
  value = cjson.encode(entry)
elseif ARGV[5] == '1' then
  return 0
end
redis.call('HSET', KEYS[3], ARGV[3], value)
redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return 1
"""


def banner_key(banner_id: str) -> str:
    return f"airdisplay:history:{banner_id}"


def _time(at: float) -> str:
    return f"{round(at * 1_000_000):0{_WIDTH}d}"


def _seconds(text: str) -> float:
    return int(text) / 1_000_000


class RedisHistory:
    """History of every banner of the fleet, shared by every replica."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._write = client.register_script(_WRITE)

    async def write(self, banner_id: str, records: list[dict[str, Any]]) -> None:
        """Write a turn's records ({"id", "at", "value"}, and "patch" in an older version's) in order."""
        for record in records:
            at, record_id = _time(record["at"]), record["id"]
            await self._write(
                keys=[banner_key(banner_id), FLEET_KEY, ENTRIES_KEY],
                args=[
                    f"{at}~{record_id}",
                    f"{at}~{banner_id}~{record_id}",
                    f"{banner_id}~{record_id}",
                    record["value"],
                    "1" if record.get("patch") else "0",
                ],
            )

    async def of(self, banner_id: str, before: tuple[float, str] | None, limit: int) -> HistoryPage:
        high = "+" if before is None else f"({_time(before[0])}~{before[1]}"
        members = await self._redis.zrevrangebylex(banner_key(banner_id), high, "-", start=0, num=limit)
        keys = [_text(m).split("~", 1) for m in members]
        entries = await self._entries([(banner_id, record_id) for _, record_id in keys])
        last = keys[-1] if len(keys) == limit else None
        cursor = None if last is None else banner_cursor(_seconds(last[0]), last[1])
        return HistoryPage(entries, cursor)

    async def between(
        self, since: float, until: float, after: tuple[float, str, str] | None, limit: int
    ) -> HistoryPage:
        low = f"[{_time(since)}" if after is None else f"({_time(after[0])}~{after[1]}~{after[2]}"
        members = await self._redis.zrangebylex(FLEET_KEY, low, f"({_time(until)}", start=0, num=limit)
        keys = [_text(m).split("~", 2) for m in members]
        entries = await self._entries([(banner_id, record_id) for _, banner_id, record_id in keys])
        last = keys[-1] if len(keys) == limit else None
        cursor = None if last is None else fleet_cursor(_seconds(last[0]), last[1], last[2])
        return HistoryPage(entries, cursor)

    async def prune(self, before: float, limit: int) -> bool:
        """Delete up to `limit` of the oldest entries made before `before`; True if that many went."""
        members = await self._redis.zrangebylex(FLEET_KEY, "-", f"({_time(before)}", start=0, num=limit)
        if not members:
            return False
        async with self._redis.pipeline(transaction=False) as pipe:
            for member in members:
                at, banner_id, record_id = _text(member).split("~", 2)
                pipe.zrem(banner_key(banner_id), f"{at}~{record_id}")
                pipe.hdel(ENTRIES_KEY, f"{banner_id}~{record_id}")
            pipe.zrem(FLEET_KEY, *members)
            await pipe.execute()
        return len(members) >= limit

    async def _entries(self, ids: list[tuple[str, str]]) -> list[HistoryEntry]:
        if not ids:
            return []
        values = await self._redis.hmget(ENTRIES_KEY, [f"{b}~{r}" for b, r in ids])
        return stored_entries(
            (banner_id, value) for (banner_id, _), value in zip(ids, values, strict=True) if value is not None
        )


def outbox_value(records: list[dict[str, Any]]) -> str:
    return json.dumps(records, separators=(",", ":"))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
