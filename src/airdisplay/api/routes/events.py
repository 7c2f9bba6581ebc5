"""Server-Sent Events for clients that cannot use WebSockets, with Last-Event-ID resume."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from ...realtime import (
    StreamHub,
    StreamSession,
    Subscriber,
    SubscriberClosed,
    SubscriberOverflow,
    TooManyBanners,
)
from ...runtimes import BannerRuntime
from ..deps import Runtime
from ..problems import ProblemError
from .banners import BannerId

router = APIRouter(tags=["realtime"])

#: Tells EventSource how long to wait before reconnecting (ms).
RETRY_MS = 2000
_EVENT_ID = re.compile(r"^([a-z0-9-]{1,64}):(\d{1,18})$")
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.get("/api/v1/banners/{banner_id}/events", response_class=StreamingResponse)
async def banner_events(
    banner_id: BannerId,
    request: Request,
    runtime: Runtime,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Events of one banner as text/event-stream."""
    await runtime.get_banner(banner_id)  # 404 for an unknown banner, before the stream starts
    return await _stream(request, runtime, [banner_id], last_event_id)


@router.get("/api/v1/events", response_class=StreamingResponse)
async def fleet_events(
    request: Request,
    runtime: Runtime,
    banners: Annotated[str, Query(min_length=1, max_length=65_000, description="Comma-separated ids")],
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Events of several banners as text/event-stream."""
    return await _stream(request, runtime, [b for b in banners.split(",") if b], last_event_id)


async def _stream(
    request: Request, runtime: BannerRuntime, banner_ids: list[str], last_event_id: str | None
) -> StreamingResponse:
    hub: StreamHub = request.app.state.hub
    settings = request.app.state.settings
    subscriber = Subscriber(settings.send_buffer)
    session = StreamSession(hub, runtime, subscriber)
    known: dict[str, int] = {}
    if last_event_id:
        found = _EVENT_ID.match(last_event_id.strip())
        if found is None:
            raise ProblemError(
                400, "Bad Last-Event-ID", "Last-Event-ID must look like '<banner-id>:<version>'", "bad-header"
            )
        known[found.group(1)] = int(found.group(2))
    try:
        await session.subscribe(banner_ids, known)
    except TooManyBanners as exc:
        session.close()
        raise ProblemError(422, "Too many banners", str(exc), "too-many-banners") from None
    except BaseException:
        session.close()
        raise
    return StreamingResponse(
        _event_source(session, settings.ping_seconds), media_type="text/event-stream", headers=_SSE_HEADERS
    )


async def _event_source(session: StreamSession, ping_seconds: float) -> AsyncIterator[str]:
    subscriber = session.subscriber
    try:
        yield f"retry: {RETRY_MS}\n\n"
        while True:
            try:
                items = await asyncio.wait_for(subscriber.take(), ping_seconds)
            except TimeoutError:
                yield ": ping\n\n"
                continue
            except (SubscriberOverflow, SubscriberClosed):
                return  # the client reconnects with Last-Event-ID and gets current state
            yield "".join(
                f"event: banner\nid: {item.banner_id}:{item.version}\ndata: {item.frame}\n\n"
                for item in items
                if item.banner_id is not None
            )
    finally:
        session.close()
