"""Server-Sent Events for clients that cannot use WebSockets, with Last-Event-ID resume (docs/realtime.md).

The framing, the keep-alive comments and the response's lifetime are sse-starlette's (`EventSourceResponse`).

Failure rules (what one client may cost, as on the WebSocket stream, routes/stream.py):
- A request the stream cannot serve is answered before it starts, with a 4xx problem.
- Events wait in the client's Subscriber, bounded in bytes and coalesced to the newest per banner; a client
  that falls too far behind even coalesced gets the end of its stream and resumes with Last-Event-ID.
- A client that stops reading is cut off as WebSocket clients are: a write that cannot go out for
  `stall_seconds` (its buffers stay full) ends the connection. Both are counted as WebSocket cut-offs
  are, in `airdisplay_slow_clients_cut_off_total` (channel "sse").
- The client's stream slot and its subscription are given back however the stream ends.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Scope, Send

from ... import tracing
from ...config import Settings
from ...realtime import (
    StreamSession,
    SubscriberClosed,
    SubscriberOverflow,
    TooManyBanners,
    delivered,
)
from .._access import AccessControl
from .._metrics import ServiceMetrics
from .._openapi import KEY_PROBLEMS, STREAM_PROBLEMS
from ..deps import Access, AppSettings, Hub, KeyChecked, Runtime
from ..problems import ProblemError
from .banners import BannerId

router = APIRouter(tags=["realtime"], dependencies=[KeyChecked], responses=KEY_PROBLEMS)
log = logging.getLogger("airdisplay.events")

#: Tells EventSource how long to wait before reconnecting (ms).
RETRY_MS = 2000
_EVENT_ID = re.compile(r"^([a-z0-9-]{1,64}):(\d{1,18})$")
#: `no-cache` as the stream always sent (sse-starlette's default is `no-store`); it adds
#: `X-Accel-Buffering: no` itself, which keeps nginx from buffering the stream.
_SSE_HEADERS = {"Cache-Control": "no-cache"}
#: Lines end with LF alone, as they always did (sse-starlette's default is CRLF; EventSource reads both).
_SEP = "\n"


def _ping() -> ServerSentEvent:
    return ServerSentEvent(comment="ping", sep=_SEP)  # ": ping", as the stream always sent


@router.get(
    "/api/v1/banners/{banner_id}/events", response_class=EventSourceResponse, responses=STREAM_PROBLEMS
)
async def banner_events(
    banner_id: BannerId,
    request: Request,
    runtime: Runtime,
    hub: Hub,
    settings: AppSettings,
    access: Access,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """Events of one banner as text/event-stream."""
    await runtime.get_banner(banner_id)  # 404 for an unknown banner, before the stream starts
    known = _known(last_event_id)
    return await _stream(
        request,
        StreamSession(hub, runtime, access.metrics.outbox("sse", settings.send_buffer)),
        [banner_id],
        known,
        settings,
        access,
    )


@router.get("/api/v1/events", response_class=EventSourceResponse, responses=STREAM_PROBLEMS)
async def fleet_events(
    request: Request,
    runtime: Runtime,
    hub: Hub,
    settings: AppSettings,
    access: Access,
    banners: Annotated[str, Query(min_length=1, max_length=65_000, description="Comma-separated ids")],
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """Events of several banners as text/event-stream."""
    banner_ids = [b for b in banners.split(",") if b]
    if not banner_ids:
        raise ProblemError(422, "Invalid request", "banners: name at least one banner id", "invalid-request")
    known = _known(last_event_id)
    return await _stream(
        request,
        StreamSession(hub, runtime, access.metrics.outbox("sse", settings.send_buffer)),
        banner_ids,
        known,
        settings,
        access,
    )


def _known(last_event_id: str | None) -> dict[str, int]:
    """What the client says it has (`Last-Event-ID: <banner-id>:<version>`); 400 if the header is bad."""
    if not last_event_id:
        return {}
    found = _EVENT_ID.match(last_event_id.strip())
    if found is None:
        raise ProblemError(
            400, "Bad Last-Event-ID", "Last-Event-ID must look like '<banner-id>:<version>'", "bad-header"
        )
    return {found.group(1): int(found.group(2))}


async def _stream(
    request: Request,
    session: StreamSession,
    banner_ids: list[str],
    known: dict[str, int],
    settings: Settings,
    access: AccessControl,
) -> Response:
    release = access.open_stream(request)
    if release is None:
        return access.too_many_streams()
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
    return _EventStream(
        session,
        release,
        access.metrics,
        ping_seconds=settings.ping_seconds,
        stall_seconds=settings.stall_seconds,
    )


class _EventStream(EventSourceResponse):
    """A session's events: gives the client's stream slot and subscription back however the stream ends,
    and counts a client cut off as too slow."""

    def __init__(
        self,
        session: StreamSession,
        release: Callable[[], None],
        metrics: ServiceMetrics,
        *,
        ping_seconds: float,
        stall_seconds: float,
    ) -> None:
        self._session = session
        self._release = release
        self._metrics = metrics
        super().__init__(
            self._events(),
            headers=_SSE_HEADERS,
            ping=ping_seconds,
            ping_message_factory=_ping,
            sep=_SEP,
            # The WebSocket streams' stall rule (routes/stream.py `watch_stall`): a client whose buffers
            # stay full for stall_seconds has stopped reading. Pings are writes too, so an idle stream's
            # client that stops reading is found once its buffers fill.
            send_timeout=stall_seconds,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            # The response cannot be finished (its last write would wait on the same full buffers): the
            # server closes the connection, with what it already holds sent first if the client reads it.
            log.info("cutting off an SSE client that stopped reading for %g s", self.send_timeout)
            self._metrics.slow_clients.labels("sse").inc()
        finally:
            self._session.close()
            self._release()

    async def _events(self) -> AsyncIterator[ServerSentEvent | bytes]:
        subscriber = self._session.subscriber
        yield ServerSentEvent(retry=RETRY_MS, sep=_SEP)
        while True:
            try:
                items = await subscriber.take()
            except SubscriberOverflow:
                log.info("ending the stream of an SSE client too far behind (it resumes with Last-Event-ID)")
                self._metrics.slow_clients.labels("sse").inc()
                return
            except SubscriberClosed:
                return
            # One write for what the subscriber had ready, as the WebSocket sender takes it.
            chunk = b"".join(
                ServerSentEvent(
                    item.frame, event="banner", id=f"{item.banner_id}:{item.version}", sep=_SEP
                ).encode()
                for item in items
                if item.banner_id is not None
            )
            if chunk:
                yield chunk
                if tracing.enabled:  # written: the stream asks for the next chunk only after that
                    for item in items:
                        delivered(subscriber, item, "sse")
