"""The device channel: a physical banner's WebSocket (docs/device-protocol.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Annotated, Literal

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ... import tracing
from ...domain import BannerNotFound, DeviceTokenInvalid, UnknownDisplayVersion, check_banner_id
from ...domain.exceptions import InvalidBannerId
from ...logs import about
from ...realtime import DeviceLink, SubscriberState
from ...runtimes import BannerRuntime
from ..deps import Access, AppSettings, Devices, Runtime
from .stream import CLOSE_SLOW_CONSUMER, FrameBudget, close_connection, error_frame

router = APIRouter(tags=["devices"])
log = logging.getLogger("airdisplay.devices")

CLOSE_MALFORMED = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_UNKNOWN_BANNER = 4404
CLOSE_HEARTBEAT_TIMEOUT = 4408
CLOSE_REPLACED = 4409
#: 429 is HTTP's "too many requests".
CLOSE_TOO_MANY_FRAMES = 4429
#: WebSocket's own "try again later" (RFC 6455, IANA registry): the process holds its most device links.
CLOSE_TRY_AGAIN_LATER = 1013
TOKEN_REPLACED = "the device token was replaced: configure the new one"

#: A link's frame budget, a token bucket. Firmware sends a heartbeat at least every 10 s and one ack per
#: display change (docs/device-protocol.md); the fleet simulator beats every 8-10 s. 10 frames a second is
#: 100 times the heartbeat pace, or 600 display changes a minute on a banner whose message shows for a
#: minute: only a broken or hostile device gets there.
DEVICE_FRAMES_PER_SECOND = 10.0
#: Frames a link may send at once before the rate applies: a reconnect's catch-up (a heartbeat, an ack)
#: and a run of quick display changes fit 50 times over.
DEVICE_FRAME_BURST = 100


class AckFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["ack"]
    version: int = Field(ge=1)


class HeartbeatFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["heartbeat"]


DeviceFrame = Annotated[AckFrame | HeartbeatFrame, Field(discriminator="type")]
_device_frame: TypeAdapter[DeviceFrame] = TypeAdapter(DeviceFrame)


class _Malformed(Exception):
    """Raised for a frame that is not a JSON object at all: the device speaks another protocol."""


class _OverBudget(Exception):
    """Raised when a device sends frames faster than its link's budget allows."""


@router.websocket("/api/v1/devices/{banner_id}/connect")
async def device_connect(
    websocket: WebSocket,
    banner_id: str,
    runtime: Runtime,
    links: Devices,
    settings: AppSettings,
    access: Access,
) -> None:
    """A banner's own link: display frames out, acks and heartbeats in."""
    await websocket.accept()
    if not links.has_room(banner_id):  # before the token check: a refused link costs no actor call
        access.metrics.device_links_refused.inc()
        await close_connection(
            websocket,
            CLOSE_TRY_AGAIN_LATER,
            f"this server holds its most device links ({links.limit:,}); retry later",
        )
        return
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    token = token.strip()
    revocations = links.revocations
    try:
        check_banner_id(banner_id)
        if scheme.lower() != "bearer" or not token:
            raise DeviceTokenInvalid(banner_id)
        await runtime.authenticate_device(banner_id, token)
    except (BannerNotFound, InvalidBannerId):
        await close_connection(websocket, CLOSE_UNKNOWN_BANNER, "unknown banner")
        return
    except DeviceTokenInvalid:
        await close_connection(websocket, CLOSE_UNAUTHORIZED, "missing or invalid device token")
        return

    link = links.attach(banner_id)
    outcome: tuple[int, str] | None
    try:
        if links.revocations != revocations and not await _token_still_opens(runtime, banner_id, token):
            # A token was rotated while this one was checked, too early to find this link and cut it.
            outcome = CLOSE_UNAUTHORIZED, TOKEN_REPLACED
        else:
            link.show(await runtime.device_online(banner_id))
            outcome = await _serve(websocket, runtime, link, settings.device_timeout)
    finally:
        if links.detach(link) and not link.deleted:
            with contextlib.suppress(BannerNotFound):
                await runtime.device_offline(banner_id)
    if outcome is not None and outcome[0] == CLOSE_TOO_MANY_FRAMES:
        log.warning(
            "device link of banner %s closed: over its frame budget", banner_id, extra=about(banner_id)
        )
        access.metrics.device_links_over_budget.inc()
    elif outcome is not None and outcome[0] == CLOSE_SLOW_CONSUMER:
        access.metrics.slow_clients.labels("device").inc()
    if outcome is not None:
        await close_connection(websocket, *outcome)


async def _token_still_opens(runtime: BannerRuntime, banner_id: str, token: str) -> bool:
    try:
        await runtime.authenticate_device(banner_id, token)
    except (DeviceTokenInvalid, BannerNotFound):
        return False
    return True


async def _serve(
    websocket: WebSocket,
    runtime: BannerRuntime,
    link: DeviceLink,
    heartbeat_seconds: float,
) -> tuple[int, str] | None:
    """Run the link until it ends; returns the close code and reason to send, if any."""
    receiver = asyncio.create_task(_receive(websocket, runtime, link))
    tasks = {
        receiver: "receive",
        asyncio.create_task(_send(websocket, link)): "send",
        # Ends when the sweeper (realtime/_devices.py) ends the link: silence or frames left unsent.
        asyncio.create_task(link.subscriber.ended()): "ended",
    }
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    reasons = {tasks[task] for task in done}
    if receiver in done and not receiver.cancelled() and isinstance(receiver.exception(), _Malformed):
        await _flush(websocket, link)  # the error frame goes out before the close
        return CLOSE_MALFORMED, "malformed frame: send JSON text frames of the device protocol"
    if receiver in done and not receiver.cancelled() and isinstance(receiver.exception(), _OverBudget):
        rate = f"{DEVICE_FRAME_BURST} at once, then {DEVICE_FRAMES_PER_SECOND:g} a second"
        return CLOSE_TOO_MANY_FRAMES, f"too many frames: at most {rate}"
    if "receive" in reasons:
        return None  # the device left
    if link.replaced:
        return CLOSE_REPLACED, "replaced by a newer connection for this banner"
    if link.deleted:
        return CLOSE_UNKNOWN_BANNER, "the banner was deleted"
    if link.revoked:
        return CLOSE_UNAUTHORIZED, TOKEN_REPLACED
    if link.timed_out:
        return CLOSE_HEARTBEAT_TIMEOUT, f"no heartbeat for {heartbeat_seconds:g} s"
    if link.subscriber.state is SubscriberState.OVERFLOWED:
        return CLOSE_SLOW_CONSUMER, "too slow: reconnect"
    return None


async def _send(websocket: WebSocket, link: DeviceLink) -> None:
    while True:
        for item in await link.subscriber.take():
            await websocket.send_text(item.frame)
            if tracing.enabled:
                link.sent(item)


async def _receive(websocket: WebSocket, runtime: BannerRuntime, link: DeviceLink) -> None:
    budget = FrameBudget(DEVICE_FRAMES_PER_SECOND, DEVICE_FRAME_BURST, overdraw=True)
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if not budget.spend():
                raise _OverBudget
            text = message.get("text")
            try:
                if text is None or not isinstance(json.loads(text), dict):
                    raise _Malformed
            except (ValueError, _Malformed):
                link.subscriber.control(
                    error_frame("malformed frame: expected a JSON object in a text frame")
                )
                await asyncio.sleep(0)  # let the error frame go out before the close
                await _flush(websocket, link)
                raise _Malformed from None
            try:
                frame = _device_frame.validate_json(text)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                link.subscriber.control(
                    error_frame(f"bad frame: {where + ': ' if where else ''}{first['msg']}")
                )
                continue
            link.heard()
            if isinstance(frame, AckFrame):
                try:
                    if tracing.enabled:
                        await _traced_ack(runtime, link, frame.version)
                    else:
                        await runtime.device_ack(link.banner_id, frame.version)
                except UnknownDisplayVersion as exc:
                    link.subscriber.control(error_frame(str(exc)))


async def _traced_ack(runtime: BannerRuntime, link: DeviceLink, version: int) -> None:
    """The ack's turn in a span under the display's delivery span: the device's ack ends the trace of the
    message it shows (a new trace when that display was not traced)."""
    shown = link.ack_trace(version)
    with tracing.span(
        "device ack",
        parent=shown,
        new_trace=shown is None,
        attributes={"banner.id": link.banner_id, "banner.display_version": version},
    ):
        await runtime.device_ack(link.banner_id, version)


async def _flush(websocket: WebSocket, link: DeviceLink) -> None:
    """Send what is still queued (the sender task has been cancelled)."""
    if link.subscriber.pending:
        for item in await link.subscriber.take():
            with contextlib.suppress(Exception):
                await websocket.send_text(item.frame)
