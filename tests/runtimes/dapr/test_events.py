"""The Dapr event bus's publisher (runtimes/dapr/_events.py) against daprd's publish endpoint on a real port.

The endpoint here is a stand-in: a real HTTP server in the test process that takes, refuses or holds each
publish as a test tells it, so the sidecar client's real code (pool, timeouts, errors) runs and every
attempt is seen. A real daprd cannot be made to refuse or stall one chosen publish on demand; its real
publishing, through Redis to every replica, is tested in tests/runtimes/dapr/test_real_cluster.py.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from airdisplay.domain import Banner, BannerChanged, ChangeKind
from airdisplay.events import change_from_json
from airdisplay.runtimes.dapr import _events
from airdisplay.runtimes.dapr._events import DaprEventBus
from airdisplay.runtimes.dapr._sidecar import Sidecar
from tests.conftest import eventually

PUBSUB, TOPIC = "airdisplay-pubsub", "banner-events"
T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
#: The status daprd answers a publish it took (it has no body).
TAKEN = 204
#: A verdict for a publish that gets no answer until the endpoint stops (the client's timeout ends it).
HOLD = "hold"
Verdict = int | str
#: What daprd answers with a refusal.
REFUSAL = b'{"errorCode":"ERR_PUBSUB_PUBLISH_MESSAGE"}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def change(banner_id: str, version: int) -> BannerChanged:
    banner = Banner(
        id=banner_id, name=f"Banner {banner_id}", version=version, created_at=T0, updated_at=T0
    )  # fmt: skip
    kind = ChangeKind.CREATED if version == 1 else ChangeKind.DEVICE_ACKNOWLEDGED
    return BannerChanged(kind, banner_id, version, banner, T0)


class PublishEndpoint:
    """`POST /v1.0/publish/<pubsub>/<topic>` on a free port: answers each publish with the next scripted
    verdict (a status, or HOLD), then with `otherwise(event)`; records every attempt and what it took."""

    def __init__(self) -> None:
        self.verdicts: list[Verdict] = []
        self.otherwise: Callable[[BannerChanged], Verdict] = lambda _change: TAKEN
        self.attempts: list[BannerChanged] = []
        self.taken: list[BannerChanged] = []
        self.port = 0
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def taken_of(self, banner_id: str) -> list[int]:
        return [c.version for c in self.taken if c.banner_id == banner_id]

    def attempted_of(self, banner_id: str) -> list[int]:
        return [c.version for c in self.attempts if c.banner_id == banner_id]

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/v1.0/publish/{pubsub}/{topic}", self._publish)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port, reuse_address=True).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self._released.set()  # held publishes answer now, so the runner need not wait for them
        if self._runner is not None:
            await self._runner.cleanup()

    async def _publish(self, request: web.Request) -> web.Response:
        assert (request.match_info["pubsub"], request.match_info["topic"]) == (PUBSUB, TOPIC)
        assert request.content_type == "application/json"
        event = change_from_json(await request.read())
        self.attempts.append(event)
        verdict = self.verdicts.pop(0) if self.verdicts else self.otherwise(event)
        if verdict == HOLD:
            await self._released.wait()
            return web.Response(status=503)
        assert isinstance(verdict, int)
        if verdict == TAKEN:
            self.taken.append(event)
            return web.Response(status=TAKEN)
        return web.Response(body=REFUSAL, status=verdict, content_type="application/json")


class Settled:
    """The `then` callbacks a test hands to `send`: records which changes' follow-ups ran, in order."""

    def __init__(self) -> None:
        self.order: list[tuple[str, int]] = []

    def of(self, change: BannerChanged) -> Callable[[], Awaitable[None]]:
        async def then() -> None:
            self.order.append((change.banner_id, change.version))

        return then

    def versions_of(self, banner_id: str) -> list[int]:
        return [version for found, version in self.order if found == banner_id]


@pytest.fixture
async def daprd():
    """The publish endpoint stand-in, taking every publish unless a test scripts otherwise."""
    endpoint = PublishEndpoint()
    await endpoint.start()
    yield endpoint
    await endpoint.stop()


@pytest.fixture
async def bus(daprd):
    """A started bus publishing to `daprd`; stopped (flushing what is queued) at the end."""
    found = DaprEventBus(Sidecar(daprd.url), PUBSUB, TOPIC)
    await found.start()
    yield found
    await found.stop()


def drained(bus: DaprEventBus) -> bool:
    """Nothing queued or being retried (the bus's own count: it has no public one)."""
    return bus._waiting == 0


def failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "airdisplay.dapr.events"]


async def test_a_change_daprd_takes_is_out_and_followed_up_before_send_returns(daprd, bus):
    """Uses the endpoint stand-in (module docstring)."""
    settled = Settled()
    await bus.send(change("b1", 1), settled.of(change("b1", 1)))
    assert daprd.taken_of("b1") == [1] and daprd.attempted_of("b1") == [1]
    assert settled.order == [("b1", 1)]
    assert drained(bus)


@pytest.mark.parametrize("status", [500, 503, 404])
async def test_a_refused_publish_is_retried_until_daprd_takes_it_without_holding_the_turn(
    daprd, bus, status, caplog
):
    """Uses the endpoint stand-in to refuse on demand (module docstring)."""
    caplog.set_level(logging.WARNING, "airdisplay.dapr.events")
    daprd.verdicts = [status, status]
    settled = Settled()
    await bus.send(change("b1", 1), settled.of(change("b1", 1)))
    # The turn goes on after one attempt: its state is durable, the follow-up waits for daprd.
    assert daprd.attempted_of("b1") == [1] and daprd.taken_of("b1") == []
    assert settled.order == [] and not drained(bus)

    await eventually(lambda: settled.order == [("b1", 1)], what="the retried publish's follow-up")
    assert daprd.attempted_of("b1") == [1, 1, 1] and daprd.taken_of("b1") == [1]
    assert drained(bus)
    assert failures(caplog) == [f"daprd refused an event ({status}): {REFUSAL!r}"] * 2


async def test_a_publish_to_a_daprd_not_listening_is_retried_until_it_listens(caplog):
    """Uses the endpoint stand-in, started late on the port the bus was given (module docstring)."""
    caplog.set_level(logging.WARNING, "airdisplay.dapr.events")
    daprd, port = PublishEndpoint(), free_port()
    bus = DaprEventBus(Sidecar(f"http://127.0.0.1:{port}"), PUBSUB, TOPIC)
    await bus.start()
    try:
        settled = Settled()
        await bus.send(change("b1", 1), settled.of(change("b1", 1)))
        assert settled.order == [] and not drained(bus)
        assert any("publishing to daprd failed" in m and "Connect" in m for m in failures(caplog))

        await daprd.start(port)
        await eventually(lambda: settled.order == [("b1", 1)], what="the publish once daprd listens")
        assert daprd.taken_of("b1") == [1]
    finally:
        await bus.stop()
        await daprd.stop()


async def test_a_publish_daprd_does_not_answer_holds_the_turn_only_for_publish_timeout(
    daprd, bus, monkeypatch, caplog
):
    """Uses the endpoint stand-in to hold one publish unanswered (module docstring)."""
    caplog.set_level(logging.WARNING, "airdisplay.dapr.events")
    monkeypatch.setattr(_events, "PUBLISH_TIMEOUT", 0.3)
    daprd.verdicts = [HOLD]
    settled = Settled()
    began = time.monotonic()
    await asyncio.wait_for(bus.send(change("b1", 1), settled.of(change("b1", 1))), timeout=5)
    assert time.monotonic() - began >= 0.29  # an asyncio timer may fire a hair early
    assert settled.order == [] and daprd.taken_of("b1") == []
    assert any("publishing to daprd failed" in m and "Timeout" in m for m in failures(caplog))

    await eventually(lambda: settled.order == [("b1", 1)], what="the retry of the held publish")
    assert daprd.attempted_of("b1") == [1, 1] and daprd.taken_of("b1") == [1]


class SleepRecorder:
    """Stands in for the events module's `asyncio`: `sleep` records its delay and only yields, so the test
    sees the backoff without waiting through it. Everything else is the real asyncio."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


async def test_retries_back_off_doubling_from_retry_first_up_to_retry_max(daprd, monkeypatch):
    """Uses the endpoint stand-in to refuse on demand (module docstring), and records the sender's sleeps
    instead of waiting through ~50 s of backoff."""
    clock = SleepRecorder()
    monkeypatch.setattr(_events, "asyncio", clock)
    bus = DaprEventBus(Sidecar(daprd.url), PUBSUB, TOPIC)
    await bus.start()
    try:
        daprd.verdicts = [503] * 9
        await bus.send(change("b1", 1))
        await eventually(lambda: daprd.taken_of("b1") == [1], what="the publish after 9 refusals")
        # The first failure is the turn's own attempt; the sender sleeps before each of its retries.
        assert clock.delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0])
        assert (_events.RETRY_FIRST, _events.RETRY_MAX) == (0.2, 10.0)
        # The next change's retries start again from RETRY_FIRST.
        daprd.verdicts = [503, 503]
        await bus.send(change("b1", 2))
        await eventually(lambda: daprd.taken_of("b1") == [1, 2], what="the second change")
        assert clock.delays[8:] == pytest.approx([0.2])
    finally:
        await bus.stop()


async def test_later_changes_wait_behind_a_retried_one_and_go_out_in_order(daprd, bus):
    """Uses the endpoint stand-in to refuse on demand (module docstring)."""
    daprd.verdicts = [503, 503, 503]
    settled = Settled()
    for version in (1, 2, 3):
        await bus.send(change("b1", version), settled.of(change("b1", version)))
    await bus.send(change("b2", 1), settled.of(change("b2", 1)))  # another banner queues behind too
    # Versions 2 and 3 and b2 were not even tried while version 1 was waiting.
    assert daprd.attempted_of("b1") == [1] and daprd.attempted_of("b2") == []

    await eventually(lambda: drained(bus), what="the queue to empty")
    assert daprd.attempted_of("b1") == [1, 1, 1, 1, 2, 3]
    assert [(c.banner_id, c.version) for c in daprd.taken] == [("b1", 1), ("b1", 2), ("b1", 3), ("b2", 1)]
    assert settled.order == [("b1", 1), ("b1", 2), ("b1", 3), ("b2", 1)]

    await bus.send(change("b1", 4), settled.of(change("b1", 4)))  # once drained, straight to daprd again
    assert daprd.taken_of("b1") == [1, 2, 3, 4] and settled.versions_of("b1") == [1, 2, 3, 4]


async def test_concurrent_turns_publish_each_banners_changes_in_version_order(daprd, monkeypatch):
    """Uses the endpoint stand-in to refuse or hold publishes at random (module docstring); retries and
    timeouts are shortened so that hundreds of them run in a second or two."""
    monkeypatch.setattr(_events, "RETRY_FIRST", 0.001)
    monkeypatch.setattr(_events, "RETRY_MAX", 0.004)
    monkeypatch.setattr(_events, "PUBLISH_TIMEOUT", 0.05)
    rng = random.Random(14)
    daprd.otherwise = lambda _change: rng.choices([TAKEN, 503, 500, HOLD], weights=[70, 15, 13, 2])[0]
    bus = DaprEventBus(Sidecar(daprd.url), PUBSUB, TOPIC)
    await bus.start()
    banners, versions = [f"b{i}" for i in range(20)], range(1, 16)
    settled = Settled()

    async def turns_of(banner_id: str) -> None:
        # One banner's turns run one at a time (daprd's actor lock), each sending its change.
        for version in versions:
            await bus.send(change(banner_id, version), settled.of(change(banner_id, version)))
            await asyncio.sleep(0)

    try:
        await asyncio.gather(*(turns_of(b) for b in banners))
        await eventually(lambda: drained(bus), what="every change to be taken")
    finally:
        await bus.stop()
    assert len(daprd.attempts) > len(daprd.taken) + 20, "too few failures to test retries"
    for banner_id in banners:
        assert daprd.taken_of(banner_id) == list(versions), banner_id
        assert settled.versions_of(banner_id) == list(versions), banner_id


async def test_stop_sends_what_is_queued_before_closing(daprd):
    """Uses the endpoint stand-in to refuse on demand (module docstring)."""
    bus = DaprEventBus(Sidecar(daprd.url), PUBSUB, TOPIC)
    await bus.start()
    daprd.verdicts = [503]
    settled = Settled()
    await bus.send(change("b1", 1), settled.of(change("b1", 1)))
    await bus.send(change("b1", 2), settled.of(change("b1", 2)))
    assert settled.order == []
    await bus.stop()
    assert daprd.taken_of("b1") == [1, 2] and settled.versions_of("b1") == [1, 2]


async def test_stop_gives_up_on_what_daprd_still_refuses_after_flush_seconds(daprd, monkeypatch, caplog):
    """Uses the endpoint stand-in to refuse on demand (module docstring). The follow-up of what was not
    sent does not run: the directory stays behind, and the banner's next activation publishes again."""
    caplog.set_level(logging.WARNING, "airdisplay.dapr.events")
    monkeypatch.setattr(_events, "FLUSH_SECONDS", 0.3)
    daprd.otherwise = lambda _change: 503
    bus = DaprEventBus(Sidecar(daprd.url), PUBSUB, TOPIC)
    await bus.start()
    settled = Settled()
    await bus.send(change("b1", 1), settled.of(change("b1", 1)))
    began = time.monotonic()
    await asyncio.wait_for(bus.stop(), timeout=5)
    assert time.monotonic() - began >= 0.29  # an asyncio timer may fire a hair early
    assert daprd.taken == [] and settled.order == []
    *refusals, gave_up = failures(caplog)
    assert len(refusals) == len(daprd.attempts) >= 2  # every refused attempt is logged
    assert gave_up.startswith("stopping with 1 banner event(s) daprd did not take within 0.3 s")
    assert bus._sender is not None and bus._sender.cancelled()  # no retries after stop


async def test_changes_sent_before_start_wait_for_it(daprd):
    """Uses the endpoint stand-in (module docstring)."""
    bus = DaprEventBus(Sidecar(daprd.url), PUBSUB, TOPIC)
    settled = Settled()
    await bus.send(change("b1", 1), settled.of(change("b1", 1)))
    assert daprd.attempts == [] and settled.order == []
    await bus.start()
    try:
        await eventually(lambda: settled.order == [("b1", 1)], what="the change sent before start")
        assert daprd.taken_of("b1") == [1]
    finally:
        await bus.stop()
