"""Server-Sent Events against a real server, read with httpx's streaming client."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from tests.api.conftest import EventStream, slow_clients_cut_off, sse
from tests.conftest import FRAME_WAIT, WAIT_LIMIT, eventually

OPERATOR_KEY = "sse-test-operator-key"


async def test_one_banner_stream_sends_state_then_changes(server):
    await server.create("b1")
    async with sse(server, "/api/v1/banners/b1/events") as stream:
        first = await stream.next_event()
        assert first["event"] == "banner" and first["id"] == "b1:1" and first["data"]["kind"] == "snapshot"
        await server.client.post("/api/v1/banners/b1/message", json={"text": "over SSE"})
        live = await stream.next_event()
        assert live["id"] == "b1:2" and live["data"]["banner"]["message"]["text"] == "over SSE"


async def test_the_wire_format_is_what_event_source_clients_read(server):
    """Retry first, then each event's fields on LF-ended lines; headers that keep caches and proxies out."""
    await server.create("b1")
    async with server.client.stream("GET", "/api/v1/banners/b1/events") as response:
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        received = b""
        async for chunk in response.aiter_raw():
            received += chunk
            if received.count(b"\n\n") >= 2:
                break
    retry, event = received.split(b"\n\n")[:2]
    assert retry == b"retry: 2000"
    fields = dict(line.split(b": ", 1) for line in event.split(b"\n"))
    assert fields[b"event"] == b"banner" and fields[b"id"] == b"b1:1"
    assert json.loads(fields[b"data"])["kind"] == "snapshot"
    assert b"\r" not in received


async def test_several_banners_in_one_stream(server):
    await server.create("a1")
    await server.create("b1")
    async with sse(server, "/api/v1/events?banners=a1,b1") as stream:
        snapshots = {(await stream.next_event())["id"] for _ in range(2)}
        assert snapshots == {"a1:1", "b1:1"}
        await server.client.post("/api/v1/banners/b1/message", json={"text": "b"})
        await server.client.post("/api/v1/banners/a1/message", json={"text": "a"})
        assert [(await stream.next_event())["id"] for _ in range(2)] == ["b1:2", "a1:2"]


async def test_last_event_id_resumes_without_repeating_what_the_client_has(server):
    await server.create("b1")
    await server.client.post("/api/v1/banners/b1/message", json={"text": "seen"})
    async with sse(server, "/api/v1/banners/b1/events", {"Last-Event-ID": "b1:2"}) as stream:
        await server.client.delete("/api/v1/banners/b1/message")
        event = await stream.next_event()
        assert event["id"] == "b1:3" and event["data"]["kind"] == "message_cleared"  # no replay of v2
    async with sse(server, "/api/v1/banners/b1/events", {"Last-Event-ID": "b1:1"}) as stream:
        event = await stream.next_event()
        assert event["id"] == "b1:3" and event["data"]["kind"] == "snapshot"  # stale client gets current


async def test_keep_alive_comments(start_server):
    server = await start_server(ping_seconds=0.05)
    await server.create("b1")
    async with server.client.stream("GET", "/api/v1/banners/b1/events") as response:
        lines = response.aiter_lines()
        seen = [await asyncio.wait_for(anext(lines), FRAME_WAIT) for _ in range(8)]
    assert ": ping" in seen


async def test_stream_problems_are_4xx_before_streaming(server):
    await server.create("b1")
    assert (await server.client.get("/api/v1/banners/nobody/events")).status_code == 404
    bad_id = await server.client.get("/api/v1/banners/b1/events", headers={"Last-Event-ID": "garbage"})
    assert bad_id.status_code == 400 and bad_id.headers["content-type"] == "application/problem+json"
    too_many = ",".join(f"b{i}" for i in range(1001))
    assert (await server.client.get(f"/api/v1/events?banners={too_many}")).status_code == 422
    assert (await server.client.get("/api/v1/events?banners=Bad!")).status_code == 422
    assert (await server.client.get("/api/v1/events")).status_code == 422
    assert (await server.client.get("/api/v1/events?banners=,,")).status_code == 422  # names no banner


def _raw_sse_that_stops_reading(url: str, path: str) -> socket.socket:
    """An SSE client that reads the response's status line and then nothing: the slowest client possible."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert sock.recv(12) == b"HTTP/1.1 200"
    return sock


def _read_until_closed(sock: socket.socket) -> bool:
    """Read what the server still sends; True once it closed the connection (False: still open)."""
    sock.settimeout(WAIT_LIMIT)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    return True


@pytest.mark.slow
async def test_a_client_that_stops_reading_is_cut_off_counted_and_never_delays_others(start_server):
    """The WebSocket stream's stall rule: a client whose buffers stay full for stall_seconds is cut off.
    Before: an SSE client that stopped reading held its stream (and the server's buffers) until it left."""
    server = await start_server(
        stall_seconds=0.5, message_seconds=3600, api_key=OPERATOR_KEY, client_sends_key=True
    )
    hub = server.app.state.hub
    ids = [f"s{i}" for i in range(40)]
    for banner_id in ids:
        await server.create(banner_id, "x" * 100)  # long names make big frames that fill buffers sooner
    path = "/api/v1/events?banners=" + ",".join(ids)
    latest: dict[str, int] = {}

    async def read_fast(stream: EventStream) -> None:
        while True:
            event = await stream.next_event()
            banner_id, version = event["id"].split(":")
            assert int(version) > latest.get(banner_id, -1), "a version went backwards"
            latest[banner_id] = int(version)

    async with sse(server, path) as fast:
        reader = asyncio.create_task(read_fast(fast))
        stuck = await asyncio.to_thread(_raw_sse_that_stops_reading, server.url, path)
        try:
            await eventually(lambda: len(hub.subscribers) == 2, what="both clients to subscribe")
            deadline = time.monotonic() + 2 * WAIT_LIMIT
            rounds = 0
            while len(hub.subscribers) == 2:
                assert time.monotonic() < deadline, f"the stuck client was not cut off after {rounds} rounds"
                rounds += 1
                await asyncio.gather(*(server.runtime.submit_message(b, f"round {rounds}") for b in ids))
                await asyncio.gather(*(server.runtime.clear_message(b) for b in ids))
            assert await slow_clients_cut_off(server, "sse") == 1
            assert await asyncio.to_thread(_read_until_closed, stuck), "the server kept the connection open"
            final = {b: (await server.runtime.get_banner(b)).version for b in ids}
            # The reading client got every banner's newest version, and its stream is still open.
            await eventually(lambda: latest == final, what="the reading client to catch up")
            assert not reader.done() and len(hub.subscribers) == 1
        finally:
            reader.cancel()
            stuck.close()
