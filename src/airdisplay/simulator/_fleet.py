"""A fleet of simulated banners against a running AirDisplay: set-up, connections, load, live counts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

import httpx
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from ._collector import keep_collector_young
from ._device import SimulatedBanner
from ._setup import GET_A_KEY, check_server, issue_tokens, no_answer, problem_detail
from ._stats import FleetStats

#: The stream's per-connection limit (docs/realtime.md).
STREAM_CHUNK = 1000
#: Banners to suggest per submit/s and second of a message: the load picks random banners and skips a
#: slot after 20 busy ones, so it keeps its rate while at least a sixth of the fleet is free.
FLEET_SLACK = 1.2


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
    #: Submit attempts per second; a slot is skipped when no free banner is found for it.
    submit_rate: float = 0.0
    connect_rate: float = 500.0
    drop_every: float | None = None
    drop_fraction: float = 0.1
    down_seconds: float = 5.0
    #: Seconds into the run (after settling) when every link drops at once, each coming back at a random
    #: moment within `down_seconds`: a reconnect storm; the summary says when each banner showed again.
    storm_after: float | None = None
    #: Pause between "all connected" and the submit load, so the connect wave's online turns and first
    #: acks (two durable writes per banner) are not measured as delivery lag.
    settle_seconds: float = 0.0


class Fleet:
    """Creates (or re-keys) the banners, keeps them connected and reports what happens.

    Failure rules: a set-up failure ends `run` with an error from `exceptions.py` (see `_setup.py`). Once
    the fleet runs, nothing ends it but its duration or `stop()` (SIGINT, Ctrl+C, calls it): refused
    submits are counted by kind, and the first of each kind is explained in one line; lost links
    reconnect. At the end every task it started is cancelled and awaited.
    """

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
        self._submits: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        #: Things explained once already: refusal kinds, the fleet's capacity.
        self._noted: set[str] = set()

    @property
    def ids(self) -> list[str]:
        width = len(str(self.config.banners - 1))
        return [f"{self.config.prefix}{i:0{width}d}" for i in range(self.config.banners)]

    async def run(self) -> dict[str, object]:
        """Set up, connect, run for the configured duration (or until interrupted), then summarise."""
        collector = asyncio.create_task(keep_collector_young())
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
            if self.config.submit_rate > 0:
                # Subscribed before the settle pause: the streams' first frames (a snapshot of every
                # banner) are a burst for the server, not part of the load being measured.
                self._tasks.append(asyncio.create_task(self._watch_acks()))
            if self.config.settle_seconds > 0:
                self._say(f"settling for {self.config.settle_seconds:g} s")
                await asyncio.sleep(self.config.settle_seconds)
            await self._steady_state()
            return self.stats.summary()  # before shutdown, so it counts the links that were up
        finally:
            await self._shutdown()
            collector.cancel()
            await asyncio.gather(collector, return_exceptions=True)

    # -- set-up ------------------------------------------------------------------------------------

    async def _prepare(self) -> dict[str, str]:
        await check_server(self.http)
        return await issue_tokens(
            self.http, self.ids, create=self.config.create, has_key=bool(self.config.api_key), say=self._say
        )

    async def _connect_all(self) -> None:
        interval = 1.0 / self.config.connect_rate
        started = time.monotonic()
        for device in self.devices:
            self._tasks.append(asyncio.create_task(device.run()))
            await asyncio.sleep(interval)
        while time.monotonic() - started < 120:
            refused = sum(device.refused for device in self.devices)
            if self.stats.connected + refused >= len(self.devices):
                if refused:  # the server is told its limit and says so: no use waiting for more
                    self._say(f"the server refused {refused} links: it holds its most device links (1013)")
                break
            self._say(self.stats.line(self._rates()))
            await asyncio.sleep(1.0)
        self._say(
            f"connected {self.stats.connected}/{len(self.devices)} in {time.monotonic() - started:.1f} s"
        )

    # -- steady state ------------------------------------------------------------------------------

    def stop(self) -> None:
        """End the run: `run` returns its summary once the fleet is shut down."""
        self._stopping.set()

    async def _steady_state(self) -> None:
        workers = [asyncio.create_task(self._report_every_second())]
        if self.config.submit_rate > 0:
            workers.append(asyncio.create_task(self._submit_load()))
        if self.config.drop_every:
            workers.append(asyncio.create_task(self._drop_periodically()))
        if self.config.storm_after is not None:
            workers.append(asyncio.create_task(self._storm_later(self.config.storm_after)))
        loop = asyncio.get_running_loop()
        handled = []
        for signum, handler in ((signal.SIGUSR1, self.drop_some), (signal.SIGINT, self.stop)):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not main thread
                loop.add_signal_handler(signum, handler)
                handled.append(signum)
        duration = self.config.duration
        self._say(
            ("running until Ctrl+C" if duration is None else f"running for {duration:g} s")
            + (f", submitting {self.config.submit_rate:g}/s" if self.config.submit_rate > 0 else "")
        )
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), duration)
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def drop_some(self) -> None:
        """Drop a fraction of the links; they come back after `down_seconds`."""
        count = max(1, int(len(self.devices) * self.config.drop_fraction))
        for device in random.sample(self.devices, count):
            device.drop(self.config.down_seconds)
        self._say(f"dropped {count} links for {self.config.down_seconds:g} s")

    def storm(self) -> None:
        """Drop every link now; each comes back at a random moment within `down_seconds`."""
        dropped_at = time.perf_counter()
        for device in self.devices:
            device.dropped_at = dropped_at
            device.drop(random.uniform(0, self.config.down_seconds))
        self.stats.storm_dropped += len(self.devices)
        self._say(f"storm: dropped all {len(self.devices)} links, back within {self.config.down_seconds:g} s")

    async def _storm_later(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.storm()

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
            if banner_id is None:
                self.stats.skipped += 1
            else:
                task = asyncio.create_task(self._submit(banner_id))
                self._submits.add(task)
                task.add_done_callback(self._submits.discard)
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
        try:
            response = await self.http.post(
                f"/api/v1/banners/{banner_id}/message", json={"text": f"sim {started:.3f}"}
            )
        except httpx.TransportError as exc:
            self._pending.pop(banner_id, None)
            self.stats.count_refusal(None)
            self._note("connection", f"a submit got no answer: {no_answer(exc)}")
            return
        if response.status_code != 201:
            self._pending.pop(banner_id, None)
            self._refused(banner_id, response)
            return
        body = response.json()
        self.stats.submits += 1
        message = body["message"]
        self._busy_until[banner_id] = datetime.fromisoformat(message["expires_at"]).timestamp()
        if banner_id in self._pending:
            self._pending[banner_id] = (started, body["display_version"])
        if "capacity" not in self._noted:
            self._note("capacity", self._capacity(message))

    def _refused(self, banner_id: str, response: httpx.Response) -> None:
        """Count a refused submit; remember when a busy banner frees up; explain a new kind once."""
        status = response.status_code
        kind = self.stats.count_refusal(status)
        if kind == "busy":
            with contextlib.suppress(ValueError, KeyError, TypeError):
                free_at = datetime.fromisoformat(response.json()["free_at"]).timestamp()
                self._busy_until[banner_id] = free_at
            return
        if kind in self._noted:
            return
        detail = problem_detail(response)
        if kind == "rate_limited":
            text = (
                f"the server rate-limits submits from this client ({status}: {detail}); "
                f"an operator key lifts the limit: {GET_A_KEY}"
            )
        elif kind == "auth":
            text = (
                f"the server refuses these submits ({status}: {detail}); "
                "pass a submitter or operator key with --api-key"
            )
        else:
            text = f"a submit was refused ({status}): {detail}"
        self._note(kind, text)

    def _capacity(self, message: dict[str, Any]) -> str | None:
        """A warning when the fleet cannot take the configured rate of messages for long."""
        try:
            seconds = (
                datetime.fromisoformat(message["expires_at"]) - datetime.fromisoformat(message["shown_at"])
            ).total_seconds()
        except (KeyError, TypeError, ValueError):
            return None
        rate = self.config.submit_rate
        sustained = len(self.devices) / seconds if seconds > 0 else math.inf
        if rate <= sustained:
            return None
        enough = math.ceil(rate * seconds * FLEET_SLACK)
        return (
            f"{len(self.devices)} banners busy {seconds:g} s per message sustain at most "
            f"{sustained:.2g} submits/s, not {rate:g}: pass --banners {enough} or more"
        )

    def _note(self, topic: str, text: str | None) -> None:
        """Say `text` the first time `topic` comes up (when there is something to say)."""
        if topic not in self._noted:
            self._noted.add(topic)
            if text:
                self._say(text)

    def _shown(self, banner_id: str, frame: dict[str, object], at: float) -> None:
        pending = self._pending.get(banner_id)
        if pending is not None and frame.get("text") is not None:
            self.stats.delivery.append(at - pending[0])

    async def _watch_acks(self) -> None:
        ids = [device.banner_id for device in self.devices]
        chunks = [ids[i : i + STREAM_CHUNK] for i in range(0, len(ids), STREAM_CHUNK)]
        await asyncio.gather(*(self._watch_chunk(chunk) for chunk in chunks))

    async def _watch_chunk(self, chunk: list[str]) -> None:
        try:
            await self._watch_stream(chunk)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            self._say(f"the event stream for acks failed ({exc}); round trips are not measured")

    async def _watch_stream(self, chunk: list[str]) -> None:
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
        for submit in self._submits:
            submit.cancel()
        await asyncio.gather(*self._submits, return_exceptions=True)
        for device in self.devices:
            device.stopped = True
            device.drop(0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http.aclose()
