"""Clients of the server's HTTP streams that several modules of tests/api read: Server-Sent Events, and the
metrics' count of slow clients. The servers themselves are tests/conftest.py's `start_server`."""

from __future__ import annotations

import asyncio
import json
import re
from contextlib import asynccontextmanager

from tests.conftest import FRAME_WAIT


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


async def slow_clients_cut_off(server, channel: str) -> float:
    """The server's count of `channel` clients cut off as too slow (the server needs an operator key)."""
    metrics = (await server.client.get("/metrics")).text
    found = re.search(
        rf'^airdisplay_slow_clients_cut_off_total\{{channel="{channel}"\}} (\S+)$', metrics, re.M
    )
    return float(found.group(1)) if found else 0.0
