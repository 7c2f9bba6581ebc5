"""Server-Sent Events against a real server, read with httpx's streaming client."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

FRAME_WAIT = 10.0


class EventStream:
    """Parses text/event-stream into (event, id, data) records."""

    def __init__(self, response):
        self.response = response
        self.lines = response.aiter_lines()

    async def next_event(self) -> dict:
        fields: dict[str, str] = {}
        while True:
            line = await asyncio.wait_for(anext(self.lines), FRAME_WAIT)
            if line == "":
                if "data" in fields:
                    return {
                        "event": fields.get("event"),
                        "id": fields.get("id"),
                        "data": json.loads(fields["data"]),
                    }
                fields.clear()
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


@asynccontextmanager
async def sse(server, path: str, headers: dict | None = None):
    async with server.client.stream("GET", path, headers=headers or {}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield EventStream(response)


async def test_one_banner_stream_sends_state_then_changes(server):
    await server.create("b1")
    async with sse(server, "/api/v1/banners/b1/events") as stream:
        first = await stream.next_event()
        assert first["event"] == "banner" and first["id"] == "b1:1" and first["data"]["kind"] == "snapshot"
        await server.client.post("/api/v1/banners/b1/message", json={"text": "over SSE"})
        live = await stream.next_event()
        assert live["id"] == "b1:2" and live["data"]["banner"]["message"]["text"] == "over SSE"


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
