"""Baseline 1: the submit rule with PostgreSQL row locks, expiry by a sweeper.

POST takes the banner's row lock (`SELECT ... FOR UPDATE`), refuses with 409 while a message shows, else
writes the message and queues a NOTIFY in the same transaction; COMMIT is durable (the harness runs the
server with fsync=on, synchronous_commit=on). A sweeper task clears expired messages in bounded batches,
bumps their version and NOTIFYs, as AirDisplay's expiry does.

    BENCH_PG_DSN=postgresql://... BENCH_DISPLAY_SECONDS=2 \
    uvicorn --app-dir bench/alternatives pg_app:app --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
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

log = logging.getLogger("pg_app")

#: Connections to PostgreSQL; the harness may change it (BENCH_PG_POOL). 16 kept both CPUs' worth of
#: work queued with 64 client connections without piling up idle backends on the one server CPU.
POOL_SIZE = int(os.environ.get("BENCH_PG_POOL", "16"))
#: The sweeper wakes every 100 ms (expiry up to ~0.1 s late) and clears at most 1,000 rows a transaction.
SWEEP_SECONDS, SWEEP_BATCH = 0.1, 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS banners (
    id text PRIMARY KEY,
    name text NOT NULL,
    version bigint NOT NULL DEFAULT 1,
    message_id text, message_text text, shown_at timestamptz, expires_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS banners_expiring ON banners (expires_at) WHERE message_id IS NOT NULL;
"""
LOCK = "SELECT name, version, message_id, expires_at FROM banners WHERE id = $1 FOR UPDATE"
SHOW = """
WITH shown AS (
    UPDATE banners SET version = $2, message_id = $3, message_text = $4, shown_at = $5, expires_at = $6,
        updated_at = $5
    WHERE id = $1 RETURNING id
) SELECT pg_notify('banner_changes', $7) FROM shown
"""
SWEEP = """
WITH due AS (
    SELECT id FROM banners WHERE message_id IS NOT NULL AND expires_at <= now()
    ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
), cleared AS (
    UPDATE banners b SET message_id = NULL, message_text = NULL, shown_at = NULL, expires_at = NULL,
        version = b.version + 1, updated_at = now()
    FROM due WHERE b.id = due.id RETURNING b.id, b.version
) SELECT pg_notify('banner_changes', json_build_object('kind', 'message_expired', 'id', id,
    'version', version)::text) FROM cleared
"""

pool: asyncpg.Pool | None = None


async def sweep_forever(db: asyncpg.Pool) -> None:
    """Clear every message past its expires_at; a full batch is followed at once by the next."""
    while True:
        try:
            cleared = len(await db.fetch(SWEEP, SWEEP_BATCH))
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("sweep failed: %s", exc)
            cleared = 0
        if cleared < SWEEP_BATCH:
            await asyncio.sleep(SWEEP_SECONDS)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    global pool
    pool = await asyncpg.create_pool(os.environ["BENCH_PG_DSN"], min_size=POOL_SIZE, max_size=POOL_SIZE)
    await pool.execute(SCHEMA)
    sweeper = asyncio.create_task(sweep_forever(pool))
    yield
    sweeper.cancel()
    await pool.close()


app = FastAPI(title="PostgreSQL row-lock baseline", lifespan=lifespan)
install_validation_handler(app)


@app.post("/api/v1/banners/{banner_id}/message", status_code=201)
async def submit_message(banner_id: str, body: MessageSubmit) -> JSONResponse:
    """Show a message on the banner unless one is showing."""
    text = clean_text(body.text)
    if text is None:
        return invalid_text()
    assert pool is not None
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(LOCK, banner_id)
        if row is None:
            return not_found(banner_id)
        now = datetime.now(UTC)  # read under the row lock: the next holder reads a later time
        if row["message_id"] is not None and row["expires_at"] > now:
            return busy(banner_id, row["expires_at"])
        expires_at = now + timedelta(seconds=DISPLAY_SECONDS)
        version = row["version"] + 1
        message = {"id": uuid.uuid4().hex, "text": text, "shown_at": iso(now), "expires_at": iso(expires_at)}
        change = json.dumps(
            {"kind": "message_shown", "id": banner_id, "version": version, "message": message}
        )
        await conn.execute(SHOW, banner_id, version, message["id"], text, now, expires_at, change)
    return banner_json(banner_id, row["name"], version, message, message["shown_at"], 201)


@app.get("/api/v1/banners/{banner_id}")
async def get_banner(banner_id: str) -> JSONResponse:
    """Read one banner."""
    assert pool is not None
    row = await pool.fetchrow("SELECT * FROM banners WHERE id = $1", banner_id)
    if row is None:
        return not_found(banner_id)
    message = None
    if row["message_id"] is not None and row["expires_at"] > datetime.now(UTC):
        message = {
            "id": row["message_id"],
            "text": row["message_text"],
            "shown_at": iso(row["shown_at"]),
            "expires_at": iso(row["expires_at"]),
        }
    return banner_json(banner_id, row["name"], row["version"], message, iso(row["updated_at"]), 200)


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}
