"""One simulated banner: keeps its device link up, shows what it is told, acknowledges, beats."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ._stats import FleetStats, link_failure

#: Close codes after which a real banner must not reconnect (docs/device-protocol.md).
FINAL_CLOSE_CODES = {4400, 4401, 4404, 4409}
#: The server holds its most device links (docs/device-protocol.md).
CLOSE_TRY_AGAIN_LATER = 1013
HEARTBEAT_SECONDS = 10.0
RECONNECT_FIRST, RECONNECT_MAX = 1.0, 60.0


class SimulatedBanner:
    """A banner's firmware, as far as the device protocol goes."""

    def __init__(
        self,
        banner_id: str,
        token: str,
        ws_url: str,
        stats: FleetStats,
        *,
        ack_delay: float,
        on_display: Callable[[str, dict[str, object], float], None],
    ) -> None:
        self.banner_id = banner_id
        self.token = token
        self.url = f"{ws_url}/api/v1/devices/{banner_id}/connect"
        self.stats = stats
        self.ack_delay = ack_delay
        self.on_display = on_display
        self.showing: dict[str, object] | None = None
        self.down_until = 0.0
        self._ws: websockets.ClientConnection | None = None
        self._closing: set[asyncio.Task[None]] = set()  # held, or the loop may drop them half-way
        self.stopped = False
        #: When a storm dropped this link (perf_counter), until its first display after coming back.
        self.dropped_at: float | None = None
        #: The server closed this banner's last link with 1013: it holds its most links (it backs off).
        self.refused = False

    def drop(self, seconds: float) -> None:
        """Cut the link now and stay away for `seconds`."""
        self.down_until = time.monotonic() + seconds
        if self._ws is not None:
            closing = asyncio.create_task(self._ws.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def run(self) -> None:
        delay = RECONNECT_FIRST
        while not self.stopped:
            wait = self.down_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                code = await self._session()
                self.refused = code == CLOSE_TRY_AGAIN_LATER
                if self.refused:  # a server that is full: back off further
                    self.stats.links_refused += 1
                else:
                    delay = RECONNECT_FIRST
            except (OSError, InvalidHandshake, InvalidStatus, TimeoutError) as exc:
                code = None
                self.stats.link_failed(link_failure(exc))
            if code in FINAL_CLOSE_CODES:
                self.stats.link_failed(link_failure(code))
                return
            if self.down_until <= time.monotonic():
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, RECONNECT_MAX)
            self.stats.reconnects += 1

    async def _session(self) -> int | None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with websockets.connect(self.url, additional_headers=headers, open_timeout=30) as ws:
            self._ws = ws
            self.refused = False
            self.stats.connected += 1
            self.stats.connects += 1
            beat = asyncio.create_task(self._beat(ws))
            try:
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame.get("type") == "display":
                        await self._show(ws, frame)
            except ConnectionClosed:
                pass
            finally:
                beat.cancel()
                self.stats.connected -= 1
                self._ws = None
            return ws.close_code

    async def _show(self, ws: websockets.ClientConnection, frame: dict[str, object]) -> None:
        self.stats.displays += 1
        self.showing = frame
        at = time.perf_counter()
        if self.dropped_at is not None:
            self.stats.restored.append(at - self.dropped_at)
            self.dropped_at = None
        self.on_display(self.banner_id, frame, at)
        if self.ack_delay:
            await asyncio.sleep(self.ack_delay)
        await ws.send(json.dumps({"type": "ack", "version": frame["version"]}))
        self.stats.acks += 1

    async def _beat(self, ws: websockets.ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(HEARTBEAT_SECONDS * random.uniform(0.8, 1.0))
                await ws.send('{"type":"heartbeat"}')
