"""Baseline 2: the submit rule with a Redis lock, `SET banner:{id}:lock <message-id> NX PXAT <expiry>`.

The lock's expiry is the "clear after the duration": once Redis drops the key the banner takes a new
message. An accepted message is then written to the banner's hash (version + 1) and PUBLISHed, in one
MULTI/EXEC. Redis itself announces each lock's expiry on `__keyevent@0__:expired` when the harness turns on
keyspace events; the hash keeps the old message (readers compare expires_at with the clock). Durability is
the server's (appendonly, appendfsync as the harness sets it).

    BENCH_REDIS_URL=redis://127.0.0.1:PORT/0 BENCH_DISPLAY_SECONDS=2 \
    uvicorn --app-dir bench/alternatives redis_app:app --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import redis.asyncio as aioredis
from _common import (
    DISPLAY_SECONDS,
    MessageSubmit,
    banner_json,
    busy,
    clean_text,
    install_validation_handler,
    invalid_text,
    iso,
    not_found,
)
from fastapi import FastAPI
from fastapi.responses import JSONResponse

#: Connections to Redis: one per wrk connection (64) is the most that can be in use at once.
POOL_SIZE = int(os.environ.get("BENCH_REDIS_POOL", "64"))
CHANNEL = "banner-changes"

client: aioredis.Redis | None = None


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    global client
    client = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"], max_connections=POOL_SIZE)
    await client.ping()
    yield
    await client.aclose()


app = FastAPI(title="Redis lock baseline", lifespan=lifespan)
install_validation_handler(app)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@app.post("/api/v1/banners/{banner_id}/message", status_code=201)
async def submit_message(banner_id: str, body: MessageSubmit) -> JSONResponse:
    """Show a message on the banner unless one is showing."""
    text = clean_text(body.text)
    if text is None:
        return invalid_text()
    assert client is not None
    key, lock = f"banner:{banner_id}", f"banner:{banner_id}:lock"
    message_id = uuid.uuid4().hex
    # The lock expires at an absolute time (PXAT, whole ms rounded up) that the answer reports as
    # expires_at; GET returns the holder's value when the lock is taken (Redis >= 7.0 allows NX with GET).
    expires_ms = math.ceil((time.time() + DISPLAY_SECONDS) * 1000)
    async with client.pipeline(transaction=False) as pipe:
        pipe.hget(key, "name").set(lock, f"{message_id} {expires_ms}", nx=True, pxat=expires_ms, get=True)
        name, holder = await pipe.execute()
    if name is None:
        if holder is None:
            await client.delete(lock)  # no such banner: give back the lock just taken
        return not_found(banner_id)
    if holder is not None:
        return busy(banner_id, _at(int(holder.split()[1])))
    # Read after taking the lock, so that it is never before the previous holder's expiry: the message
    # shows from here until the lock's expiry (one Redis round trip less than DISPLAY_SECONDS).
    shown_at = iso(datetime.now(UTC))
    message = {"id": message_id, "text": text, "shown_at": shown_at, "expires_at": iso(_at(expires_ms))}
    change = json.dumps({"kind": "message_shown", "id": banner_id, "message": message})
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping={"message": json.dumps(message), "updated_at": shown_at})
        pipe.hincrby(key, "version", 1).publish(CHANNEL, change)
        _, version, _ = await pipe.execute()
    return banner_json(banner_id, name.decode(), int(version), message, shown_at, 201)


@app.get("/api/v1/banners/{banner_id}")
async def get_banner(banner_id: str) -> JSONResponse:
    """Read one banner."""
    assert client is not None
    fields = {k.decode(): v.decode() for k, v in (await client.hgetall(f"banner:{banner_id}")).items()}
    if not fields:
        return not_found(banner_id)
    message = json.loads(fields["message"]) if fields.get("message") else None
    if message is not None and message["expires_at"] <= iso(datetime.now(UTC)):
        message = None
    updated = fields.get("updated_at", "")
    return banner_json(banner_id, fields["name"], int(fields.get("version", 1)), message, updated, 200)


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}
