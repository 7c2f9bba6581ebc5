"""WebSocket stream of banner events (docs/realtime.md): subscribe, snapshots, live events, pings."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ...domain import DomainError, format_time
from ...realtime import (
    MAX_BANNERS_PER_CONNECTION,
    StreamHub,
    StreamSession,
    Subscriber,
    SubscriberClosed,
    SubscriberState,
    TooManyBanners,
)
from ...runtimes import BannerRuntime
from .._access import AccessControl

router = APIRouter(tags=["realtime"])
log = logging.getLogger("airdisplay.stream")

#: Close code for a client that cannot keep up even with coalesced state (private range, docs/realtime.md).
CLOSE_SLOW_CONSUMER = 4008
#: RFC 6455's "policy violation": the connection asked for what it may not have (docs/realtime.md).
CLOSE_POLICY = 1008
#: How long a close handshake may take before the connection is abandoned.
CLOSE_TIMEOUT = 2.0
#: RFC 6455 5.5: a close frame's body is at most 125 bytes, two of them the code.
MAX_CLOSE_REASON_BYTES = 123


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    banners: list[str] = Field(max_length=MAX_BANNERS_PER_CONNECTION)


class SubscribeFrame(_Frame):
    type: Literal["subscribe"]
    known: dict[str, int] = Field(default_factory=dict, max_length=MAX_BANNERS_PER_CONNECTION)


class SetFrame(_Frame):
    type: Literal["set"]
    known: dict[str, int] = Field(default_factory=dict, max_length=MAX_BANNERS_PER_CONNECTION)


class UnsubscribeFrame(_Frame):
    type: Literal["unsubscribe"]


ClientFrame = Annotated[SubscribeFrame | SetFrame | UnsubscribeFrame, Field(discriminator="type")]
_client_frame: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)


def error_frame(detail: str) -> str:
    return json.dumps({"type": "error", "detail": detail})


def ping_frame() -> str:
    return json.dumps({"type": "ping", "at": format_time(datetime.now(UTC))})


async def close_connection(websocket: WebSocket, code: int, reason: str) -> None:
    """Close with `code` and as much of `reason` as a close frame holds; a client already gone is fine."""
    said = reason.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code, said), CLOSE_TIMEOUT)


async def pump(websocket: WebSocket, subscriber: Subscriber) -> None:
    """Send whatever the subscriber has queued, until it is closed or overflows."""
    while True:
        for item in await subscriber.take():
            await websocket.send_text(item.frame)


async def ping_every(subscriber: Subscriber, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        subscriber.control(ping_frame())


async def watch_stall(subscriber: Subscriber, stall_seconds: float) -> None:
    """Cut off a client whose frames have waited unsent for `stall_seconds` (it stopped reading)."""
    while subscriber.state is SubscriberState.OPEN:
        await asyncio.sleep(stall_seconds / 4)
        if subscriber.stalled_for() > stall_seconds:
            subscriber.overflow()


async def serve_subscriber(
    websocket: WebSocket,
    subscriber: Subscriber,
    receiver: asyncio.Task[None],
    *,
    ping_seconds: float | None,
    stall_seconds: float,
) -> None:
    """Run sender, pinger and receiver until one ends; close with 4008 if the client fell too far behind."""
    tasks: list[asyncio.Task[object]] = [
        receiver,
        asyncio.create_task(pump(websocket, subscriber)),
        asyncio.create_task(subscriber.ended()),
        asyncio.create_task(watch_stall(subscriber, stall_seconds)),
    ]
    if ping_seconds is not None:
        tasks.append(asyncio.create_task(ping_every(subscriber, ping_seconds)))
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if subscriber.state is SubscriberState.OVERFLOWED:
        log.info("closing a slow WebSocket client (%d coalescing rounds)", subscriber.coalesced)
        await close_connection(
            websocket, CLOSE_SLOW_CONSUMER, "too slow: reconnect and resubscribe with known versions"
        )


@router.websocket("/api/v1/stream")
async def stream(websocket: WebSocket, banners: Annotated[str | None, Query()] = None) -> None:
    """Live banner events for the banners a client subscribes to."""
    app = websocket.app
    hub: StreamHub = app.state.hub
    runtime: BannerRuntime = app.state.runtime
    settings = app.state.settings
    access: AccessControl = app.state.access
    release = await access.accept_stream(websocket)
    if release is None:
        return
    subscriber = Subscriber(settings.send_buffer)
    session = StreamSession(hub, runtime, subscriber)
    try:
        if banners:
            # The query is the connection's request: one that cannot be honoured ends it, with the reason.
            try:
                await session.subscribe(b for b in banners.split(",") if b)
            except (TooManyBanners, DomainError) as exc:
                await close_connection(websocket, CLOSE_POLICY, f"banners: {exc}")
                return
            _confirm(session)
        receiver = asyncio.create_task(_receive(websocket, session))
        await serve_subscriber(
            websocket,
            subscriber,
            receiver,
            ping_seconds=settings.ping_seconds,
            stall_seconds=settings.stall_seconds,
        )
    finally:
        session.close()
        release()


async def _receive(websocket: WebSocket, session: StreamSession) -> None:
    with contextlib.suppress(WebSocketDisconnect, SubscriberClosed):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                session.subscriber.control(error_frame("frames must be JSON text, not binary"))
                continue
            try:
                frame = _client_frame.validate_json(text)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                detail = f"{where}: {first['msg']}" if where else first["msg"]
                session.subscriber.control(error_frame(f"bad frame: {detail}"))
                continue
            await _apply(session, frame)


async def _apply(session: StreamSession, frame: SubscribeFrame | SetFrame | UnsubscribeFrame) -> None:
    try:
        if isinstance(frame, SubscribeFrame):
            await session.subscribe(frame.banners, frame.known)
        elif isinstance(frame, SetFrame):
            await session.replace(frame.banners, frame.known)
        else:
            session.unsubscribe(frame.banners)
    except (TooManyBanners, DomainError) as exc:
        session.subscriber.control(error_frame(str(exc)))
        return
    _confirm(session)


def _confirm(session: StreamSession) -> None:
    session.subscriber.control(json.dumps({"type": "subscribed", "banners": sorted(session.banners)}))
