"""The device channel: a physical banner's WebSocket (docs/device-protocol.md), served at the ASGI level.

`AirDisplayAPI` hands `GET /api/v1/devices/{banner_id}/connect` upgrades to `DeviceChannel` before FastAPI
(no route, middleware or dependency frames), and a link then runs on one task, its ASGI task, which
waits for the device's frames:
- frames for the device are written by a short-lived sender task, started when the link's outbox gets
  one (`Subscriber.notify`) and ended when the outbox is empty: an idle link has no sender;
- a link ended from outside (a newer link for the banner, the banner deleted, its token replaced, the
  sweeper's silence or stall limits) cancels the link's task, which then closes with the reason.
Before, a link held four tasks (its ASGI task through FastAPI, a receiver, a sender and a wait for its
end) and ~50 KB of server memory (docs/benchmarks/results/devices.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import timedelta
from typing import Annotated, Literal
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.types import Message, Receive, Scope, Send

from ... import tracing
from ...domain import (
    BannerNotFound,
    DeviceTokenInvalid,
    UnknownDisplayVersion,
    Upcoming,
    check_banner_id,
)
from ...domain.exceptions import InvalidBannerId
from ...logs import about
from ...realtime import DeviceLink, DeviceLinks, SubscriberState
from ...runtimes import BannerRuntime
from .._metrics import ServiceMetrics
from .stream import CLOSE_SLOW_CONSUMER, CLOSE_TIMEOUT, FrameBudget, close_connection, error_frame

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


#: What `_Session._on_message` answers when the link goes on.
GO_ON: Literal[True] = True

_PATH = re.compile(r"/api/v1/devices/([^/]+)/connect")


class DeviceChannel:
    """Serves device links (see the module's docstring)."""

    def __init__(
        self,
        runtime: BannerRuntime,
        links: DeviceLinks,
        metrics: ServiceMetrics,
        heartbeat_seconds: float,
        offline_grace: float = 0.0,
        *,
        slot_seconds: float = 60.0,
    ) -> None:
        self.runtime = runtime
        #: How long a message shows: the slot of a booking sent ahead (`?next=1`).
        self.slot = timedelta(seconds=slot_seconds)
        self.links = links
        self.metrics = metrics
        self.heartbeat_seconds = heartbeat_seconds
        self.offline_grace = offline_grace
        #: Banners whose link ended, and when their grace runs out (then they are marked offline).
        self._offline_due: dict[str, asyncio.TimerHandle] = {}
        self._marking: set[asyncio.Task[None]] = set()

    async def went_away(self, link: DeviceLink) -> None:
        """The banner's current link ended. A device silent past its timeout, or whose token was replaced,
        is offline now; any other (it left, broke the protocol, fell behind) once `offline_grace` passes
        without a new link: a device back within it marks nothing, neither offline nor online (a
        reconnect storm of 20,000 links wrote 40,000 changes before; docs/benchmarks/results/devices.md)."""
        if self.offline_grace <= 0 or link.timed_out or link.revoked:
            await self._mark_offline(link.banner_id)
            return
        loop = asyncio.get_running_loop()
        self._offline_due[link.banner_id] = loop.call_later(
            self.offline_grace, self._grace_over, link.banner_id
        )

    def _back(self, banner_id: str) -> None:
        """A new link for the banner: it is not going offline."""
        due = self._offline_due.pop(banner_id, None)
        if due is not None:
            due.cancel()

    def _grace_over(self, banner_id: str) -> None:
        self._offline_due.pop(banner_id, None)
        task = asyncio.get_running_loop().create_task(self._mark_offline(banner_id))
        self._marking.add(task)
        task.add_done_callback(self._marking.discard)

    async def _mark_offline(self, banner_id: str) -> None:
        # Checked right before the turn, which queues ahead of any later link's `device_online` turn.
        if banner_id in self.links:
            return
        try:
            await self.runtime.device_offline(banner_id)
        except BannerNotFound:
            pass
        except Exception:  # the runtime or its store is failing: the banner stays marked online
            log.warning("could not mark banner %s offline", banner_id, exc_info=True, extra=about(banner_id))

    async def settle(self) -> None:
        """At shutdown: the banners still within their grace are marked offline now."""
        due, self._offline_due = self._offline_due, {}
        for banner_id, handle in due.items():
            handle.cancel()
            self._grace_over(banner_id)
        await asyncio.gather(*self._marking, return_exceptions=True)

    @staticmethod
    def handles(scope: Scope) -> str | None:
        """The banner id when the scope is a device link's upgrade, else None."""
        if scope["type"] != "websocket":
            return None
        found = _PATH.fullmatch(scope["path"])
        return None if found is None else found.group(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, banner_id: str) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        links = self.links
        if not links.has_room(banner_id):  # before the token check: a refused link costs no actor call
            self.metrics.device_links_refused.inc()
            await close_connection(
                send,
                CLOSE_TRY_AGAIN_LATER,
                f"this server holds its most device links ({links.limit:,}); retry later",
            )
            return
        token = _bearer(scope)
        # The link needs nothing more of its upgrade request, whose headers the server's scope would hold
        # for the link's life (1.3 KB a link; docs/benchmarks/results/devices.md).
        scope["headers"] = []
        revocations = links.revocations
        runtime = self.runtime
        try:
            check_banner_id(banner_id)
            if not token:
                raise DeviceTokenInvalid(banner_id)
            authenticated = await runtime.authenticate_device(banner_id, token)
            upcoming = None
            if authenticated.queue and _wants_next(scope):  # the next booking's text, for this link
                waiting = (await runtime.bookings(banner_id)).entries
                upcoming = Upcoming(waiting[0].id, waiting[0].text) if waiting else None
        except (BannerNotFound, InvalidBannerId):
            await close_connection(send, CLOSE_UNKNOWN_BANNER, "unknown banner")
            return
        except DeviceTokenInvalid:
            await close_connection(send, CLOSE_UNAUTHORIZED, "missing or invalid device token")
            return
        self._back(banner_id)
        link = links.attach(banner_id, self.slot if _wants_next(scope) else None)
        link.upcoming = upcoming
        session = _Session(link, send)
        outcome = await session.run(self, receive, token, revocations)
        if outcome is not None and outcome[0] == CLOSE_TOO_MANY_FRAMES:
            log.warning(
                "device link of banner %s closed: over its frame budget", banner_id, extra=about(banner_id)
            )
            self.metrics.device_links_over_budget.inc()
        elif outcome is not None and outcome[0] == CLOSE_SLOW_CONSUMER:
            self.metrics.slow_clients.labels("device").inc()
        if outcome is not None:
            await close_connection(send, *outcome)


class _Session:
    """One link's state beside its DeviceLink: the ASGI `send`, the task that runs the link, its sender."""

    __slots__ = ("link", "send", "task", "sender", "ending")

    def __init__(self, link: DeviceLink, send: Send) -> None:
        self.link = link
        self.send = send
        self.task = asyncio.current_task()
        self.sender: asyncio.Task[None] | None = None
        #: Set when the link was ended from outside and its task cancelled for it.
        self.ending = False
        link.subscriber.notify = self._notified

    async def run(
        self, channel: DeviceChannel, receive: Receive, token: str, revocations: int
    ) -> tuple[int, str] | None:
        """Run the link until it ends; returns the close code and reason to send, if any."""
        link, runtime = self.link, channel.runtime
        banner_id = link.banner_id
        try:
            try:
                if channel.links.revocations != revocations and not await _token_still_opens(
                    runtime, banner_id, token
                ):
                    # A token was rotated while this one was checked, too early to find this link and cut it.
                    return CLOSE_UNAUTHORIZED, TOKEN_REPLACED
                link.show(await runtime.device_online(banner_id))
                return await self._receive(receive, runtime)
            except asyncio.CancelledError:
                if not self.ending:
                    raise
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                return _ended(link, channel.heartbeat_seconds)
        finally:
            link.subscriber.notify = None
            if self.sender is not None:
                self.sender.cancel()
            if channel.links.detach(link) and not link.deleted:
                await channel.went_away(link)

    def _notified(self) -> None:
        """The outbox got a frame, or was closed or overflowed (then the link ends)."""
        subscriber = self.link.subscriber
        if subscriber.state is not SubscriberState.OPEN:
            if not self.ending and self.task is not None:
                self.ending = True
                self.task.cancel()
        elif self.sender is None:
            self.sender = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        """Write what the outbox holds, then end (the next frame starts another)."""
        subscriber, send = self.link.subscriber, self.send
        try:
            while subscriber.pending and subscriber.state is SubscriberState.OPEN:
                for item in await subscriber.take():
                    await send({"type": "websocket.send", "text": item.frame})
                    if tracing.enabled:
                        self.link.sent(item)
        except Exception:  # the device went away: the link's task hears it from `receive`
            log.debug("device link of banner %s: send failed", self.link.banner_id, exc_info=True)
        finally:
            self.sender = None

    async def _flush(self) -> None:
        """Send what is still queued before a close (an error frame saying why), here rather than in the
        sender task."""
        if self.sender is not None:
            self.sender.cancel()
        await self._send()

    async def _receive(self, receive: Receive, runtime: BannerRuntime) -> tuple[int, str] | None:
        """Take the device's frames until it leaves (None) or breaks the protocol (the close to send)."""
        budget = FrameBudget(DEVICE_FRAMES_PER_SECOND, DEVICE_FRAME_BURST, overdraw=True)
        while True:
            # Each frame is handled in a call of its own: nothing of it stays referenced while the link
            # waits for the next (the message, its text and the parsed frame were ~0.5 KB a link).
            outcome = await self._on_message(await receive(), budget, runtime)
            if outcome is not GO_ON:
                return outcome

    async def _on_message(
        self, message: Message, budget: FrameBudget, runtime: BannerRuntime
    ) -> tuple[int, str] | None | Literal[True]:
        """Handle one ASGI message from the device: GO_ON, or how the link ends (see `_receive`)."""
        if message["type"] != "websocket.receive":
            return None  # websocket.disconnect: the device left
        if not budget.spend():
            rate = f"{DEVICE_FRAME_BURST} at once, then {DEVICE_FRAMES_PER_SECOND:g} a second"
            return CLOSE_TOO_MANY_FRAMES, f"too many frames: at most {rate}"
        link = self.link
        text = message.get("text")
        try:
            if text is None or not isinstance(parsed := json.loads(text), dict):
                raise _Malformed
        except (ValueError, _Malformed):
            link.subscriber.control(error_frame("malformed frame: expected a JSON object in a text frame"))
            await asyncio.wait_for(self._flush(), CLOSE_TIMEOUT)
            return CLOSE_MALFORMED, "malformed frame: send JSON text frames of the device protocol"
        version = _well_formed(parsed)
        if version is None:  # not a plain heartbeat or ack: pydantic says what is wrong, or reads it
            try:
                frame = _device_frame.validate_python(parsed)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                link.subscriber.control(
                    error_frame(f"bad frame: {where + ': ' if where else ''}{first['msg']}")
                )
                return GO_ON
            version = frame.version if isinstance(frame, AckFrame) else 0
        link.heard()
        if version:
            try:
                if tracing.enabled:
                    await _traced_ack(runtime, link, version)
                else:
                    await runtime.device_ack(link.banner_id, version)
            except UnknownDisplayVersion as exc:
                link.subscriber.control(error_frame(str(exc)))
        return GO_ON


def _well_formed(frame: dict[str, object]) -> int | None:
    """0 for a plain heartbeat, the version for a plain ack, None for anything else (pydantic then checks
    it): the frames every link sends, read without a model (pydantic was 4% of a reconnect storm's CPU)."""
    kind = frame.get("type")
    if kind == "heartbeat" and len(frame) == 1:
        return 0
    if kind == "ack" and len(frame) == 2:
        version = frame.get("version")
        if type(version) is int and version >= 1:
            return version
    return None


def _ended(link: DeviceLink, heartbeat_seconds: float) -> tuple[int, str] | None:
    """Why a link ended from outside: the close to send."""
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


def _wants_next(scope: Scope) -> bool:
    """True when the firmware asked for the next booking ahead: `next=1` in the query."""
    query: bytes = scope.get("query_string", b"")
    return bool(query) and "1" in parse_qs(query.decode("latin-1")).get("next", [])


def _bearer(scope: Scope) -> str:
    """The token of the upgrade's `Authorization: Bearer` header ('' when there is none)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


async def _token_still_opens(runtime: BannerRuntime, banner_id: str, token: str) -> bool:
    try:
        await runtime.authenticate_device(banner_id, token)
    except (DeviceTokenInvalid, BannerNotFound):
        return False
    return True


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
