"""Server-Sent Events for clients that cannot use WebSockets, with Last-Event-ID resume."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ...realtime import (
    StreamHub,
    StreamSession,
    Subscriber,
    SubscriberClosed,
    SubscriberOverflow,
    TooManyBanners,
)
from ...runtimes import BannerRuntime
from .._access import AccessControl
from .._openapi import KEY_PROBLEMS, STREAM_PROBLEMS
from ..deps import KeyChecked, Runtime
from ..problems import ProblemError
from .banners import BannerId

router = APIRouter(tags=["realtime"], dependencies=[KeyChecked], responses=KEY_PROBLEMS)

#: Tells EventSource how long to wait before reconnecting (ms).
RETRY_MS = 2000
_EVENT_ID = re.compile(r"^([a-z0-9-]{1,64}):(\d{1,18})$")
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.get("/api/v1/banners/{banner_id}/events", response_class=StreamingResponse, responses=STREAM_PROBLEMS)
async def banner_events(
    banner_id: BannerId,
    request: Request,
    runtime: Runtime,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """Events of one banner as text/event-stream."""
    await runtime.get_banner(banner_id)  # 404 for an unknown banner, before the stream starts
    return await _stream(request, runtime, [banner_id], last_event_id)


@router.get("/api/v1/events", response_class=StreamingResponse, responses=STREAM_PROBLEMS)
async def fleet_events(
    request: Request,
    runtime: Runtime,
    banners: Annotated[str, Query(min_length=1, max_length=65_000, description="Comma-separated ids")],
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """Events of several banners as text/event-stream."""
    banner_ids = [b for b in banners.split(",") if b]
    if not banner_ids:
        raise ProblemError(422, "Invalid request", "banners: name at least one banner id", "invalid-request")
    return await _stream(request, runtime, banner_ids, last_event_id)


async def _stream(
    request: Request, runtime: BannerRuntime, banner_ids: list[str], last_event_id: str | None
) -> Response:
    hub: StreamHub = request.app.state.hub
    settings = request.app.state.settings
    access: AccessControl = request.app.state.access
    known: dict[str, int] = {}
    if last_event_id:
        found = _EVENT_ID.match(last_event_id.strip())
        if found is None:
            raise ProblemError(
                400, "Bad Last-Event-ID", "Last-Event-ID must look like '<banner-id>:<version>'", "bad-header"
            )
        known[found.group(1)] = int(found.group(2))
    release = access.open_stream(request)
    if release is None:
        return access.too_many_streams()
    subscriber = Subscriber(settings.send_buffer)
    session = StreamSession(hub, runtime, subscriber)
    try:
        await session.subscribe(banner_ids, known)
    except TooManyBanners as exc:
        session.close()
        release()
        raise ProblemError(422, "Too many banners", str(exc), "too-many-banners") from None
    except BaseException:
        session.close()
        release()
        raise
    return _CountedStream(
        _event_source(session, settings.ping_seconds),
        release,
        media_type="text/event-stream",
        headers=_SSE_HEADERS,
    )


class _CountedStream(StreamingResponse):
    """An event stream that gives its client's stream slot back however it ends."""

    def __init__(self, content: AsyncIterator[str], release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


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
