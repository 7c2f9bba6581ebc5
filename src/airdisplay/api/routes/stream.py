"""WebSocket stream of banner events (docs/realtime.md): subscribe, snapshots, live events, pings.

Failure rules (what one client may cost, docs/realtime.md "Limits"):
- Frames to the client wait in its Subscriber, bounded in bytes; replies that only say the newest thing
  (`subscribed`, `ping`, a refusal) replace a queued one of their kind. A client that falls too far
  behind, or stops reading, is closed with 4008.
- Frames from the client spend a per-connection budget (`FrameBudget`). A frame over budget changes
  nothing and is answered with an error frame; `REFUSALS_BEFORE_CLOSE` of them in a row close the
  connection with 4429.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.types import Send

from ... import tracing
from ...domain import DomainError, format_time
from ...realtime import (
    MAX_BANNERS_PER_CONNECTION,
    StreamSession,
    Subscriber,
    SubscriberClosed,
    SubscriberState,
    TooManyBanners,
    delivered,
)
from .._metrics import ServiceMetrics
from ..deps import Access, AppSettings, Hub, Runtime

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
#: Close code for a client that keeps sending frames over its budget (private range; 429 is HTTP's "too
#: many requests", the code device links use too).
CLOSE_TOO_MANY_FRAMES = 4429

#: A connection's frame budget, a token bucket: each frame costs one, plus one per `BANNERS_PER_TOKEN`
#: banners it names (a frame of 1,000 ids reads 1,000 snapshots). The fleet page sends one `set` of a few
#: dozen banners per page turn; 10 a second is ten page turns a second, sustained.
FRAMES_PER_SECOND = 10.0
#: Frames a connection may send at once before the rate applies: a reconnect's resubscribe and a burst of
#: quick page turns fit; so do two subscribes of 1,000 banners (11 each).
FRAME_BURST = 30
BANNERS_PER_TOKEN = 100
#: Frames refused in a row before the connection is closed with 4429: the client ignores the error frames
#: that told it to slow down (a well-behaved one backs off after the first).
REFUSALS_BEFORE_CLOSE = 10
TOO_MANY_FRAMES = (
    f"too many frames: a connection may send {FRAMES_PER_SECOND:g} a second ({FRAME_BURST} at once; a frame "
    f"naming {BANNERS_PER_TOKEN} banners counts one more); this one was ignored"
)

#: How the receiver asks for the connection to be closed: (code, reason).
CloseRequest = tuple[int, str]


class FrameBudget:
    """`burst` tokens at once, refilled at `per_second`; a frame spends what it costs, or is refused.

    With `overdraw` a refused frame is spent anyway, so a sender over budget pays back its excess before
    it is served again (device links, which close at the first refusal, use it).
    """

    __slots__ = ("per_second", "burst", "overdraw", "_clock", "_left", "_at")

    def __init__(
        self,
        per_second: float = FRAMES_PER_SECOND,
        burst: float = FRAME_BURST,
        clock: Callable[[], float] = time.monotonic,
        *,
        overdraw: bool = False,
    ) -> None:
        self.per_second = per_second
        self.burst = float(burst)
        self.overdraw = overdraw
        self._clock = clock
        self._left = self.burst
        self._at = clock()

    def spend(self, cost: float = 1.0) -> bool:
        """Spend `cost` tokens if there are as many; False if not (then nothing spent, unless `overdraw`)."""
        now = self._clock()
        self._left = min(self.burst, self._left + (now - self._at) * self.per_second)
        self._at = now
        if self._left < cost:
            if self.overdraw:
                self._left -= cost
            return False
        self._left -= cost
        return True


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


async def close_connection(send: Send, code: int, reason: str) -> None:
    """Close a WebSocket through its ASGI `send` (a Starlette WebSocket's `send`, or a raw one) with `code`
    and as much of `reason` as a close frame holds; a client already gone is fine."""
    said = reason.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
    with contextlib.suppress(Exception):
        await asyncio.wait_for(send({"type": "websocket.close", "code": code, "reason": said}), CLOSE_TIMEOUT)


async def pump(websocket: WebSocket, subscriber: Subscriber) -> None:
    """Send whatever the subscriber has queued, until it is closed or overflows."""
    while True:
        for item in await subscriber.take():
            await websocket.send_text(item.frame)
            if tracing.enabled:
                delivered(subscriber, item, "websocket")


async def ping_every(subscriber: Subscriber, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        subscriber.control(ping_frame(), kind="ping")


async def watch_stall(subscriber: Subscriber, stall_seconds: float) -> None:
    """Cut off a client whose frames have waited unsent for `stall_seconds` (it stopped reading)."""
    while subscriber.state is SubscriberState.OPEN:
        await asyncio.sleep(stall_seconds / 4)
        if subscriber.stalled_for() > stall_seconds:
            subscriber.overflow()


async def serve_subscriber(
    websocket: WebSocket,
    subscriber: Subscriber,
    receiver: asyncio.Task[CloseRequest | None],
    *,
    ping_seconds: float | None,
    stall_seconds: float,
    metrics: ServiceMetrics,
) -> None:
    """Run sender, pinger and receiver until one ends; close with 4008 if the client fell too far behind
    (counted in `metrics.slow_clients`), or as the receiver asked if it ended with a CloseRequest."""
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
    asked = receiver.result() if receiver.done() and not receiver.cancelled() else None
    if asked is not None:
        log.info("closing a WebSocket client: %s", asked[1])
        await close_connection(websocket.send, *asked)
    elif subscriber.state is SubscriberState.OVERFLOWED:
        log.info("closing a slow WebSocket client (%d coalescing rounds)", subscriber.coalesced)
        metrics.slow_clients.labels("websocket").inc()
        await close_connection(
            websocket.send, CLOSE_SLOW_CONSUMER, "too slow: reconnect and resubscribe with known versions"
        )


@router.websocket("/api/v1/stream")
async def stream(
    websocket: WebSocket,
    hub: Hub,
    runtime: Runtime,
    settings: AppSettings,
    access: Access,
    banners: Annotated[str | None, Query()] = None,
) -> None:
    """Live banner events for the banners a client subscribes to."""
    release = await access.accept_stream(websocket)
    if release is None:
        return
    subscriber = access.metrics.outbox("websocket", settings.send_buffer)
    session = StreamSession(hub, runtime, subscriber)
    try:
        if banners:
            # The query is the connection's request: one that cannot be honoured ends it, with the reason.
            try:
                await session.subscribe(b for b in banners.split(",") if b)
            except (TooManyBanners, DomainError) as exc:
                await close_connection(websocket.send, CLOSE_POLICY, f"banners: {exc}")
                return
            _confirm(session)
        receiver = asyncio.create_task(_receive(websocket, session))
        await serve_subscriber(
            websocket,
            subscriber,
            receiver,
            ping_seconds=settings.ping_seconds,
            stall_seconds=settings.stall_seconds,
            metrics=access.metrics,
        )
    finally:
        session.close()
        release()


async def _receive(websocket: WebSocket, session: StreamSession) -> CloseRequest | None:
    """Apply the client's frames within its budget until it leaves (None) or must be closed."""
    budget = FrameBudget(FRAMES_PER_SECOND, FRAME_BURST)
    refused = 0
    with contextlib.suppress(WebSocketDisconnect, SubscriberClosed):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return None
            # One token before parsing, the rest once the frame says how many banners it names.
            frame: ClientFrame | None = None
            within = budget.spend()
            if within:
                frame = _parse(message.get("text"), session.subscriber)  # None: answered with an error
                within = frame is None or budget.spend(len(frame.banners) / BANNERS_PER_TOKEN)
            if not within:
                refused += 1
                if refused >= REFUSALS_BEFORE_CLOSE:
                    return CLOSE_TOO_MANY_FRAMES, "too many frames: wait a few seconds, then reconnect"
                session.subscriber.control(error_frame(TOO_MANY_FRAMES), kind="refused")
                continue
            refused = 0
            if frame is not None:
                await _apply(session, frame)
    return None


def _parse(text: str | None, subscriber: Subscriber) -> ClientFrame | None:
    """The client's frame, or None after queueing an error frame that says what is wrong with it."""
    if text is None:
        subscriber.control(error_frame("frames must be JSON text, not binary"))
        return None
    try:
        return _client_frame.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        detail = f"{where}: {first['msg']}" if where else first["msg"]
        subscriber.control(error_frame(f"bad frame: {detail}"))
        return None


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
    frame = json.dumps({"type": "subscribed", "banners": sorted(session.banners)})
    session.subscriber.control(frame, kind="subscribed")  # only the newest list says anything
