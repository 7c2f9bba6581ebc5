"""A fleet of simulated banners against a running AirDisplay: set-up, connections, load, live counts."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

import httpx
import websockets
from websockets.exceptions import ConnectionClosed

from ._device import SimulatedBanner
from ._stats import FleetStats

#: Parallel REST calls while creating banners or rotating their tokens.
SETUP_CONCURRENCY = 32
#: The stream's per-connection limit (docs/realtime.md).
STREAM_CHUNK = 1000


@dataclass(frozen=True)
class SimulationConfig:
    """How to run the fleet; see `airdisplay simulate --help`."""

    url: str
    banners: int
    prefix: str = "sim-"
    create: bool = False
    api_key: str | None = None
    ack_delay: float = 0.0
    duration: float | None = None
    submit_rate: float = 0.0
    connect_rate: float = 500.0
    drop_every: float | None = None
    drop_fraction: float = 0.1
    down_seconds: float = 5.0
    #: Pause between "all connected" and the submit load, so the connect wave's online turns and first
    #: acks (two durable writes per banner) are not measured as delivery lag.
    settle_seconds: float = 0.0


class Fleet:
    """Creates (or re-keys) the banners, keeps them connected and reports what happens."""

    def __init__(self, config: SimulationConfig, out: TextIO = sys.stderr) -> None:
        self.config = config
        self.out = out
        self.stats = FleetStats(banners=config.banners)
        self.ws_url = config.url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/")
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self.http = httpx.AsyncClient(
            base_url=config.url, headers=headers, timeout=60, limits=httpx.Limits(max_connections=64)
        )
        self.devices: list[SimulatedBanner] = []
        self._pending: dict[str, tuple[float, int]] = {}  # banner -> (submit start, display version)
        self._busy_until: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def ids(self) -> list[str]:
        width = len(str(self.config.banners - 1))
        return [f"{self.config.prefix}{i:0{width}d}" for i in range(self.config.banners)]

    async def run(self) -> dict[str, object]:
        """Set up, connect, run for the configured duration (or until interrupted), then summarise."""
        try:
            tokens = await self._prepare()
            self.devices = [
                SimulatedBanner(
                    banner_id,
                    token,
                    self.ws_url,
                    self.stats,
                    ack_delay=self.config.ack_delay,
                    on_display=self._shown,
                )
                for banner_id, token in tokens.items()
            ]
            await self._connect_all()
            # The links live until the end: keep the collector from rescanning them. Without this, full
            # collections of a 10,000-link simulator paused it for ~1 s and showed up as delivery lag.
            gc.collect()
            gc.freeze()
            if self.config.settle_seconds > 0:
                self._say(f"settling for {self.config.settle_seconds:g} s")
                await asyncio.sleep(self.config.settle_seconds)
            await self._steady_state()
            return self.stats.summary()  # before shutdown, so it counts the links that were up
        finally:
            await self._shutdown()

    # -- set-up ------------------------------------------------------------------------------------

    async def _prepare(self) -> dict[str, str]:
        ids = self.ids
        tokens: dict[str, str] = {}
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)
        started = time.monotonic()

        async def one(banner_id: str) -> None:
            async with gate:
                if self.config.create:
                    created = await self.http.post(
                        "/api/v1/banners", json={"id": banner_id, "name": banner_id}
                    )
                    if created.status_code == 201:
                        tokens[banner_id] = created.json()["device_token"]
                        return
                    if created.status_code != 409:
                        raise RuntimeError(f"creating {banner_id}: {created.status_code} {created.text}")
                rotated = await self.http.post(f"/api/v1/banners/{banner_id}/device-token")
                if rotated.status_code != 201:
                    raise RuntimeError(f"device token for {banner_id}: {rotated.status_code} {rotated.text}")
                tokens[banner_id] = rotated.json()["device_token"]

        pending = [asyncio.create_task(one(banner_id)) for banner_id in ids]
        while pending:
            done, still = await asyncio.wait(pending, timeout=1.0)
            for task in done:
                task.result()
            pending = list(still)
            self._say(f"setting up banners: {len(tokens)}/{len(ids)}")
        self._say(f"set up {len(ids)} banners in {time.monotonic() - started:.1f} s")
        return tokens

    async def _connect_all(self) -> None:
        interval = 1.0 / self.config.connect_rate
        started = time.monotonic()
        for device in self.devices:
            self._tasks.append(asyncio.create_task(device.run()))
            await asyncio.sleep(interval)
        while self.stats.connected < len(self.devices) and time.monotonic() - started < 120:
            self._say(self.stats.line(self._rates()))
            await asyncio.sleep(1.0)
        self._say(
            f"connected {self.stats.connected}/{len(self.devices)} in {time.monotonic() - started:.1f} s"
        )

    # -- steady state ------------------------------------------------------------------------------

    async def _steady_state(self) -> None:
        workers = [asyncio.create_task(self._report_every_second())]
        if self.config.submit_rate > 0:
            workers.append(asyncio.create_task(self._watch_acks()))
            workers.append(asyncio.create_task(self._submit_load()))
        if self.config.drop_every:
            workers.append(asyncio.create_task(self._drop_periodically()))
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGUSR1, self.drop_some)
        try:
            if self.config.duration is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(self.config.duration)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def drop_some(self) -> None:
        """Drop a fraction of the links; they come back after `down_seconds`."""
        count = max(1, int(len(self.devices) * self.config.drop_fraction))
        for device in random.sample(self.devices, count):
            device.drop(self.config.down_seconds)
        self._say(f"dropped {count} links for {self.config.down_seconds:g} s")

    async def _drop_periodically(self) -> None:
        assert self.config.drop_every is not None
        while True:
            await asyncio.sleep(self.config.drop_every)
            self.drop_some()

    async def _submit_load(self) -> None:
        interval = 1.0 / self.config.submit_rate
        next_at = time.perf_counter()
        while True:
            next_at += interval
            banner_id = self._free_banner()
            if banner_id is not None:
                asyncio.get_running_loop().create_task(self._submit(banner_id))
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    def _free_banner(self) -> str | None:
        now = time.time()
        for _ in range(20):
            device = random.choice(self.devices)
            if device.banner_id not in self._pending and self._busy_until.get(device.banner_id, 0) < now:
                return device.banner_id
        return None

    async def _submit(self, banner_id: str) -> None:
        started = time.perf_counter()
        self._pending[banner_id] = (started, -1)
        response = await self.http.post(
            f"/api/v1/banners/{banner_id}/message", json={"text": f"sim {started:.3f}"}
        )
        if response.status_code != 201:
            self._pending.pop(banner_id, None)
            self.stats.refused += 1
            return
        body = response.json()
        self.stats.submits += 1
        self._busy_until[banner_id] = datetime.fromisoformat(body["message"]["expires_at"]).timestamp()
        if banner_id in self._pending:
            self._pending[banner_id] = (started, body["display_version"])

    def _shown(self, banner_id: str, frame: dict[str, object], at: float) -> None:
        pending = self._pending.get(banner_id)
        if pending is not None and frame.get("text") is not None:
            self.stats.delivery.append(at - pending[0])

    async def _watch_acks(self) -> None:
        ids = [device.banner_id for device in self.devices]
        chunks = [ids[i : i + STREAM_CHUNK] for i in range(0, len(ids), STREAM_CHUNK)]
        await asyncio.gather(*(self._watch_chunk(chunk) for chunk in chunks))

    async def _watch_chunk(self, chunk: list[str]) -> None:
        async with websockets.connect(f"{self.ws_url}/api/v1/stream", max_size=2**24) as ws:
            await ws.send(json.dumps({"type": "subscribe", "banners": chunk}))
            with contextlib.suppress(ConnectionClosed):
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame.get("kind") != "device_acknowledged":
                        continue
                    banner_id = frame["banner_id"]
                    pending = self._pending.get(banner_id)
                    device = frame["banner"]["device"]
                    if pending is not None and device["displayed_version"] == pending[1]:
                        self.stats.round_trip.append(time.perf_counter() - pending[0])
                        del self._pending[banner_id]

    # -- reporting ---------------------------------------------------------------------------------

    _last: tuple[float, int, int] = (0.0, 0, 0)

    def _rates(self) -> dict[str, float]:
        now = time.monotonic()
        then, displays, acks = self._last
        span = max(now - then, 1e-9)
        self._last = (now, self.stats.displays, self.stats.acks)
        return {"displays": (self.stats.displays - displays) / span, "acks": (self.stats.acks - acks) / span}

    async def _report_every_second(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._say(self.stats.line(self._rates()))

    def _say(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=self.out, flush=True)

    async def _shutdown(self) -> None:
        for device in self.devices:
            device.stopped = True
            device.drop(0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http.aclose()
