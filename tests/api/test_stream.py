"""The WebSocket stream against a real server with the `websockets` client library."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from airdisplay.api.routes import stream as stream_route
from airdisplay.api.routes.stream import FrameBudget
from airdisplay.realtime import SubscriberState
from tests.api.conftest import slow_clients_cut_off
from tests.conftest import FRAME_WAIT, StreamClient, eventually

REALTIME_DOC = Path(__file__).parents[2] / "docs" / "realtime.md"
#: What uvicorn sends to every open WebSocket when the server stops (RFC 6455 7.4.1 "Service Restart").
CLOSE_SERVICE_RESTART = 1012


@pytest.fixture
async def clients():
    opened: list[StreamClient] = []

    async def open_client(server, query: str = "") -> StreamClient:
        client = await StreamClient.connect(server, query)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        await client.close()


async def post(server, banner_id: str, text: str) -> dict:
    response = await server.client.post(f"/api/v1/banners/{banner_id}/message", json={"text": text})
    assert response.status_code == 201, response.text
    return response.json()


async def test_subscribing_sends_current_state_first(server, clients):
    await server.create("b1", "First")
    shown = await post(server, "b1", "hello")
    client = await clients(server)
    await client.send(type="subscribe", banners=["b1"])
    first, second = await client.next(), await client.next()
    by_type = {first["type"]: first, second["type"]: second}
    assert by_type["subscribed"]["banners"] == ["b1"]
    snapshot = by_type["banner"]
    assert snapshot["kind"] == "snapshot" and snapshot["version"] == 2
    assert snapshot["banner"] == shown


async def test_live_events_arrive_in_version_order(server, clients):
    await server.create("b1")
    client = await clients(server, "?banners=b1")
    await client.banner_frames("b1", 1)  # the snapshot
    for i in range(10):
        await post(server, "b1", f"m{i}")
        assert (await server.client.delete("/api/v1/banners/b1/message")).status_code == 200
    frames = await client.banner_frames("b1", 20)
    assert [f["version"] for f in frames] == list(range(2, 22))
    assert [f["kind"] for f in frames[:2]] == ["message_shown", "message_cleared"]
    assert frames[0]["banner"]["message"]["text"] == "m0"


async def test_resume_after_reconnect_has_no_gaps_or_regressions(server, clients):
    await server.create("b1")
    client = await clients(server, "?banners=b1")
    await post(server, "b1", "one")
    frames = await client.banner_frames("b1", 2)
    have = frames[-1]["version"]
    await client.close()

    await server.client.delete("/api/v1/banners/b1/message")  # happens while disconnected
    await post(server, "b1", "two")

    again = await clients(server)
    await again.send(type="subscribe", banners=["b1"], known={"b1": have})
    resumed = await again.until(lambda f: f["type"] == "banner")
    assert resumed["kind"] == "snapshot" and resumed["version"] == have + 2
    assert resumed["banner"]["message"]["text"] == "two"
    await server.client.delete("/api/v1/banners/b1/message")
    live = await again.until(lambda f: f["type"] == "banner")
    assert live["version"] == have + 3


async def test_known_current_version_skips_the_snapshot(server, clients):
    await server.create("b1")
    await server.create("b2")
    client = await clients(server)
    await client.send(type="subscribe", banners=["b1", "b2"], known={"b1": 1})
    first = await client.until(lambda f: f["type"] == "banner")
    assert first["banner_id"] == "b2"  # b1 was already current on the client
    await post(server, "b1", "live")
    live = await client.until(lambda f: f["type"] == "banner")
    assert (live["banner_id"], live["version"]) == ("b1", 2)


async def test_changing_the_subscription_while_connected(server, clients):
    for banner_id in ("a1", "b1", "c1"):
        await server.create(banner_id)
    client = await clients(server, "?banners=a1")
    await client.banner_frames("a1", 1)
    await client.send(type="set", banners=["b1", "c1"])
    await client.until(lambda f: f["type"] == "subscribed" and f["banners"] == ["b1", "c1"])
    await client.send(type="unsubscribe", banners=["c1"])
    await client.until(lambda f: f["type"] == "subscribed" and f["banners"] == ["b1"])
    await post(server, "a1", "not for me")
    await post(server, "c1", "not for me either")
    await post(server, "b1", "for me")
    live = await client.until(lambda f: f["type"] == "banner" and f["kind"] != "snapshot")
    assert live["banner_id"] == "b1"
    assert not [
        f
        for f in client.seen
        if f["type"] == "banner" and f["kind"] == "message_shown" and f["banner_id"] != "b1"
    ]


async def test_expiry_reaches_subscribers(start_server, clients):
    server = await start_server(message_seconds=0.3)
    await server.create("b1")
    client = await clients(server, "?banners=b1")
    await post(server, "b1", "brief")
    expired = await client.until(lambda f: f["type"] == "banner" and f["kind"] == "message_expired")
    assert expired["banner"]["message"] is None and expired["version"] == 3


async def test_unknown_banner_is_reported_missing_then_followed_when_created(server, clients):
    client = await clients(server, "?banners=later")
    missing = await client.until(lambda f: f["type"] == "banner")
    assert (missing["kind"], missing["version"], missing["banner"]) == ("missing", 0, None)
    await server.create("later", "Late")
    created = await client.until(lambda f: f["type"] == "banner")
    assert created["kind"] == "created" and created["banner"]["name"] == "Late"


async def test_deleted_then_recreated_banner_streams_again(server, clients):
    await server.create("b1")
    client = await clients(server, "?banners=b1")
    await client.banner_frames("b1", 1)
    await server.client.delete("/api/v1/banners/b1")
    deleted = (await client.banner_frames("b1", 1))[0]
    assert deleted["kind"] == "deleted" and deleted["banner"] is None and deleted["version"] == 2
    await server.create("b1", "Reborn")
    created = (await client.banner_frames("b1", 1))[0]
    assert created["kind"] == "created" and created["version"] == 1


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("not json", "bad frame"),
        ('{"type": "dance"}', "bad frame"),
        ('{"type": "subscribe", "banners": "b1"}', "bad frame"),
        ('{"type": "subscribe", "banners": ["Bad Id"]}', "slug"),
        ('{"type": "subscribe", "banners": ["b1"], "known": {"b1": "x"}}', "bad frame"),
        ('{"type": "subscribe", "banners": ["b1"], "extra": 1}', "bad frame"),
        (json.dumps({"type": "subscribe", "banners": [f"b{i}" for i in range(1001)]}), "at most 1000"),
    ],
    ids=["not json", "unknown type", "banners not a list", "bad id", "bad known", "extra field", "too many"],
)
async def test_bad_frames_get_an_error_and_change_nothing(server, clients, frame, expected):
    await server.create("b1")
    client = await clients(server)
    await client.ws.send(frame)
    error = await client.next()
    assert error["type"] == "error" and expected in error["detail"]
    await client.send(type="subscribe", banners=["b1"])  # the connection is still usable
    assert (await client.until(lambda f: f["type"] == "banner"))["banner_id"] == "b1"


async def test_binary_frames_are_refused_with_an_error(server, clients):
    client = await clients(server)
    await client.ws.send(b"\x00\x01")
    assert (await client.next())["type"] == "error"


async def test_keep_alive_pings(start_server, clients):
    server = await start_server(ping_seconds=0.05)
    client = await clients(server)
    ping = await client.next(skip_pings=False)
    assert ping["type"] == "ping" and ping["at"].endswith("Z")


def _raw_ws_that_never_reads(url: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads: the slowest client possible."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(
        b"GET /api/v1/stream?banners=" + ",".join(f"s{i}" for i in range(40)).encode() + b" HTTP/1.1\r\n"
        b"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert sock.recv(12) == b"HTTP/1.1 101"
    return sock


@pytest.mark.slow
async def test_a_client_that_stops_reading_is_cut_off_and_never_delays_others(start_server, clients):
    server = await start_server(
        stall_seconds=0.5, message_seconds=3600, api_key="stream-test-operator-key", client_sends_key=True
    )
    hub = server.app.state.hub
    ids = [f"s{i}" for i in range(40)]
    for banner_id in ids:
        await server.create(banner_id, "x" * 100)  # long names make big frames that fill buffers sooner
    fast = await clients(server, "?banners=" + ",".join(ids))
    latest: dict[str, int] = {}

    async def read_fast() -> None:
        while True:
            frame = await fast.next()
            if frame["type"] == "banner":
                assert frame["version"] > latest.get(frame["banner_id"], -1), "a version went backwards"
                latest[frame["banner_id"]] = frame["version"]

    reader = asyncio.create_task(read_fast())
    stuck = await asyncio.to_thread(_raw_ws_that_never_reads, server.url)
    try:
        await eventually(lambda: len(hub.subscribers) == 2, what="both clients to subscribe")
        rounds = 0
        while all(s.state is SubscriberState.OPEN for s in hub.subscribers) and len(hub.subscribers) == 2:
            rounds += 1
            assert rounds < 2000, "the stuck client was never cut off"
            await asyncio.gather(*(server.runtime.submit_message(b, f"round {rounds}") for b in ids))
            await asyncio.gather(*(server.runtime.clear_message(b) for b in ids))
        final = {b: (await server.runtime.get_banner(b)).version for b in ids}
        # The fast client got every banner's newest version while the stuck one was being cut off.
        await eventually(lambda: latest == final, what="the fast client to catch up")
        await eventually(lambda: len(hub.subscribers) == 1, what="the stuck client to leave the hub")
        assert not reader.done()
        assert await slow_clients_cut_off(server, "websocket") == 1
    finally:
        reader.cancel()
        stuck.close()


async def test_resume_with_versions_from_an_earlier_life_gets_the_current_truth(server, clients):
    await server.create("b1")
    await post(server, "b1", "gone soon")
    await server.client.delete("/api/v1/banners/b1")
    await server.create("b2")
    await post(server, "b2", "old life")
    await server.client.delete("/api/v1/banners/b2")
    await server.create("b2", "New life")
    client = await clients(server)
    await client.send(type="set", banners=["b1", "b2"], known={"b1": 2, "b2": 2})
    frames = {
        f["banner_id"]: f for f in [await client.until(lambda f: f["type"] == "banner") for _ in range(2)]
    }
    assert frames["b1"]["kind"] == "missing"
    assert frames["b2"]["kind"] == "snapshot" and frames["b2"]["banner"]["name"] == "New life"
    assert frames["b2"]["version"] == 1


async def closed_with(ws) -> tuple[int, str]:
    """Read until the server closes the connection; its close code and reason."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), FRAME_WAIT)
    received = closed.value.rcvd
    assert received is not None, "the connection ended without a close frame"
    return received.code, received.reason


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("?banners=" + ",".join(f"b{i}" for i in range(1001)), "at most 1000"),
        ("?banners=b1,Not!A!Slug", "slug"),
    ],
    ids=["too many banners", "bad id"],
)
async def test_a_subscription_query_that_cannot_be_honoured_closes_with_1008(server, clients, query, reason):
    await server.create("b1")
    client = await clients(server, query)
    code, said = await closed_with(client.ws)
    assert code == 1008 and reason in said
    assert not server.app.state.hub.subscribers  # nothing stayed subscribed
    ok = await clients(server, "?banners=b1,")  # a trailing comma is no bad id; the server still serves
    assert (await ok.until(lambda f: f["type"] == "banner"))["banner_id"] == "b1"


async def test_a_query_of_a_thousand_long_ids_is_served(server, clients):
    """The largest query the stream allows: its handshake line is ~65 KB, past websockets' default 8 KiB."""
    ids = ["b1"] + [f"{i:04d}" + "x" * 60 for i in range(999)]
    await server.create("b1")
    client = await clients(server, "?banners=" + ",".join(ids))
    frame = await client.until(lambda f: f["type"] == "banner" and f["banner_id"] == "b1")
    assert frame["banner"]["id"] == "b1"


async def test_shutdown_closes_streams_with_the_documented_code(start_server, clients):
    """The code a client sees when the server stops (uvicorn sends it) is the one docs/realtime.md names."""
    server = await start_server()
    await server.create("b1")
    client = await clients(server, "?banners=b1")
    await client.until(lambda f: f["type"] == "banner")
    stopping = asyncio.create_task(server.stop())
    code, _ = await closed_with(client.ws)
    await stopping
    assert code == CLOSE_SERVICE_RESTART
    assert f"| `{CLOSE_SERVICE_RESTART}` | service restarting |" in REALTIME_DOC.read_text(encoding="utf-8")


def test_the_frame_budget_refuses_what_it_cannot_pay_and_refills_with_time():
    now = [0.0]
    budget = FrameBudget(per_second=10, burst=3, clock=lambda: now[0])
    assert budget.spend() and budget.spend(1.5)
    assert not budget.spend(1)  # 0.5 left: refused, and nothing spent
    now[0] += 0.05
    assert budget.spend(1)  # 0.5 + 0.5 refilled
    now[0] += 60
    assert budget.spend(3) and not budget.spend(0.1)  # refilled to the burst, not beyond


async def test_frames_over_budget_get_an_error_then_the_connection_closes_with_4429(
    server, clients, monkeypatch
):
    monkeypatch.setattr(stream_route, "FRAMES_PER_SECOND", 1e-9)  # no refill during the test
    client = await clients(server)
    big = [f"{i:04d}" + "x" * 60 for i in range(1000)]
    await client.send(type="subscribe", banners=big)  # 1 + 10: a frame naming 1,000 banners costs 11
    await client.send(type="set", banners=big)  # 11 more
    for _ in range(stream_route.FRAME_BURST - 22):
        await client.send(type="unsubscribe", banners=[])
    await client.send(type="subscribe", banners=["b1"])  # over budget: ignored, with an error frame
    refused = await client.until(lambda f: f["type"] == "error")
    assert "too many frames" in refused["detail"]
    assert not [f for f in client.seen if f["type"] == "subscribed" and "b1" in f["banners"]]
    for _ in range(stream_route.REFUSALS_BEFORE_CLOSE - 1):
        await client.send(type="unsubscribe", banners=[])
    code, reason = await closed_with(client.ws)
    assert code == stream_route.CLOSE_TOO_MANY_FRAMES == 4429 and "too many frames" in reason
    assert "| `4429` | too many frames |" in REALTIME_DOC.read_text(encoding="utf-8")
