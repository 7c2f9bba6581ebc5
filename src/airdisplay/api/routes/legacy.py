"""The original demo's API, so its page and scripts work unchanged against AirDisplay (docs/legacy-api.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request, Response, WebSocket
from pydantic import BaseModel, ConfigDict, Field

from ...domain import BANNER_ID_PATTERN
from ...events import legacy_banner_json
from .._openapi import JSON_BODY_PROBLEMS, KEY_PROBLEMS, SUBMIT_PROBLEMS
from .._submit import submit_flow
from ..deps import Access, AppSettings, Hub, JsonBody, KeyChecked, Runtime, Submitter
from .stream import serve_subscriber

router = APIRouter(tags=["legacy"], dependencies=[KeyChecked], responses=KEY_PROBLEMS)

#: The demo listed every banner; a fleet can be millions, so the legacy list is the first page only.
LEGACY_LIST_LIMIT = 500
LegacyId = Annotated[str, Path(pattern=BANNER_ID_PATTERN)]


class LegacyBanner(BaseModel):
    """The demo's banner: `message` is '' and `expires` is year 1 while no message shows."""

    id: str
    message: str
    expires: str


class LegacyUpdate(BaseModel):
    """The demo's update body; unknown fields are ignored as they were there."""

    model_config = ConfigDict(extra="ignore")

    message: str = Field(
        min_length=1,
        max_length=1000,
        description="As `text` in v1: after trimming, 1 to `max_text_length` characters as people see "
        "them, at least one visible (64 by "
        "default); at most 1,000 as sent.",
    )


def _json(text: str) -> Response:
    return Response(text, media_type="application/json")


@router.get("/banners", response_model=list[LegacyBanner])
async def legacy_list(runtime: Runtime) -> Response:
    """Legacy: the first 500 banners as {id, message, expires}."""
    banners = await runtime.list_banners(after=None, limit=LEGACY_LIST_LIMIT)
    return _json("[" + ",".join(legacy_banner_json(b.id, b) for b in banners) + "]")


@router.get("/banner/{banner_id}", response_model=LegacyBanner)
async def legacy_get(banner_id: LegacyId, runtime: Runtime) -> Response:
    """Legacy: one banner as {id, message, expires}."""
    banner = await runtime.get_banner(banner_id)
    return _json(legacy_banner_json(banner.id, banner))


@router.post(
    "/banner/{banner_id}",
    response_model=LegacyBanner,
    responses={409: {"description": "A message is showing"}, **SUBMIT_PROBLEMS, **JSON_BODY_PROBLEMS},
    dependencies=[Submitter, JsonBody],
)
async def legacy_update(
    banner_id: LegacyId,
    body: LegacyUpdate,
    request: Request,
    runtime: Runtime,
    access: Access,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """Legacy: show a message; 409 with {"detail": ...} while one is showing."""
    # The v1 submit's flow, so the text policy and the message counters apply alike (docs/security.md).
    outcome = await submit_flow(
        access,
        runtime,
        banner_id,
        body.message,
        idempotency_key=None,
        if_match=None,
        by=access.who(request, authorization),
    )
    return _json(legacy_banner_json(banner_id, outcome.banner))


@router.websocket("/ws")
async def legacy_ws(websocket: WebSocket, hub: Hub, settings: AppSettings, access: Access) -> None:
    """Legacy: every banner change, as the banner object {id, message, expires}."""
    release = await access.accept_stream(websocket)
    if release is None:
        return
    subscriber = access.metrics.outbox("websocket", settings.send_buffer)
    hub.watch_all(subscriber)
    try:
        receiver = asyncio.create_task(_ignore_input(websocket))
        await serve_subscriber(
            websocket,
            subscriber,
            receiver,
            ping_seconds=None,
            stall_seconds=settings.stall_seconds,
            metrics=access.metrics,
        )
    finally:
        hub.drop(subscriber)
        subscriber.close()
        release()


async def _ignore_input(websocket: WebSocket) -> None:
    """The demo's clients send nothing that matters; read until they leave."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
