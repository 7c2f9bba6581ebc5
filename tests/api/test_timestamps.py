"""Every time that leaves the server has one format: UTC, ISO 8601, `Z` (as `format_time` writes it).

The walk drives a real server through what a client meets (REST bodies and headers, problem bodies, the
WebSocket stream, SSE, a device link, the legacy API, the keys list) and checks every time in everything
it received; then the Dapr wire, which carries times between replicas.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from click.testing import CliRunner

from airdisplay.access import KeysFile, Role
from airdisplay.cli import main
from airdisplay.domain import Banner, BannerBusy, BannerChanged, ChangeKind, Message
from airdisplay.events import change_from_json, change_to_json
from airdisplay.runtimes.dapr._wire import error, unwrap
from tests.conftest import StreamClient, connect_device, recv

#: Anything that looks like an ISO 8601 time, with or without an offset.
ANY_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?")
#: The one format: seconds always, microseconds when there are any, `Z` for UTC.
ONE_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{6})?Z")
#: The legacy API's "no message" value is the original demo's `datetime.min`, kept as its clients know it.
LEGACY_FREE = "0001-01-01T00:00:00"
OPERATOR_KEY = "timestamps-operator-key"


def times_in(text: str) -> list[str]:
    return [found.group() for found in ANY_TIME.finditer(text) if found.group() != LEGACY_FREE]


def assert_one_format(seen: dict[str, list[str]]) -> None:
    wrong = {
        where: bad
        for where, texts in seen.items()
        if (bad := [t for text in texts for t in times_in(text) if not ONE_FORMAT.fullmatch(t)])
    }
    assert not wrong, f"times in another format: {wrong}"


async def test_every_time_a_client_receives_has_one_format(start_server, tmp_path):
    KeysFile(tmp_path).create(Role.SUBMITTER, "kiosk")
    server = await start_server(api_key=OPERATOR_KEY, client_sends_key=True, ping_seconds=0.05)
    seen: dict[str, list[str]] = {}

    async def call(method: str, path: str, **kwargs: object) -> httpx.Response:
        response = await server.client.request(method, path, **kwargs)
        headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
        seen.setdefault(f"{method} {path} -> {response.status_code}", []).extend([response.text, headers])
        return response

    token = (await call("POST", "/api/v1/banners", json={"id": "b1", "name": "B1"})).json()["device_token"]
    stream = await StreamClient.connect(server, "?banners=b1")
    device = await connect_device(server, "b1", token)
    async with server.client.stream("GET", "/api/v1/banners/b1/events") as sse:
        sse_lines = sse.aiter_lines()
        await recv(device)
        await call("POST", "/api/v1/banners/b1/message", json={"text": "one"})
        display = await recv(device)
        await device.send(json.dumps({"type": "ack", "version": display["version"]}))
        busy = await call("POST", "/api/v1/banners/b1/message", json={"text": "two"})
        legacy_busy = await call("POST", "/banner/b1", json={"message": "two"})
        for path in ("/api/v1/banners", "/api/v1/banners/b1", "/banners", "/banner/b1"):
            await call("GET", path)
        acked = await stream.until(lambda f: f.get("kind") == "device_acknowledged")
        while (await stream.next(skip_pings=False))["type"] != "ping":
            pass
        sse_text = [await asyncio.wait_for(anext(sse_lines), 10) for _ in range(12)]
        await call("DELETE", "/api/v1/banners/b1/message")
    await device.close()
    await stream.close()
    keys_list = CliRunner().invoke(main, ["keys", "list", "--data-dir", str(tmp_path)])
    assert keys_list.exit_code == 0, keys_list.output

    seen["WS /api/v1/stream"] = [json.dumps(frame) for frame in stream.seen]
    seen["SSE"] = sse_text
    seen["device link"] = [json.dumps(display)]
    seen["keys list"] = [keys_list.output, (tmp_path / "keys.json").read_text()]
    # The walk met each kind of time: banner times, the problem's free_at, pings, expiries, device times.
    assert busy.status_code == legacy_busy.status_code == 409
    assert times_in(busy.json()["free_at"]) and times_in(busy.json()["detail"])
    assert times_in(legacy_busy.json()["detail"])
    assert times_in(display["expires_at"]) and times_in(acked["banner"]["device"]["last_seen"])
    assert any(f["type"] == "ping" and times_in(f["at"]) for f in stream.seen)
    assert any(line.startswith("data:") and times_in(line) for line in sse_text)
    assert times_in(keys_list.output)
    assert_one_format(seen)


def test_keys_of_an_older_keys_file_are_listed_in_the_one_format(tmp_path):
    """Keys files written before times had one format hold `+00:00`; `keys list` shows them as `Z`."""
    record, _ = KeysFile(tmp_path).create(Role.OPERATOR, "ops")
    path = tmp_path / "keys.json"
    path.write_text(path.read_text().replace(record.created_at, "2026-11-28T01:02:03+00:00"))
    listed = CliRunner().invoke(main, ["keys", "list", "--data-dir", str(tmp_path)])
    assert listed.exit_code == 0 and "2026-11-28T01:02:03Z" in listed.output
    assert_one_format({"keys list": [listed.output]})


def test_the_dapr_wire_carries_times_in_the_one_format():
    """Replicas exchange domain errors and events as JSON; times on that wire follow the same format."""
    now = datetime(2026, 11, 28, 1, 2, 3, 456789, tzinfo=UTC)
    free_at = now.astimezone(timezone(timedelta(hours=2)))  # an offset of its own comes out as UTC too
    envelope = error(BannerBusy("b1", free_at))
    message = Message(id="m", text="hi", shown_at=now, expires_at=now + timedelta(seconds=60))
    banner = Banner(id="b1", name="B1", message=message, created_at=now, updated_at=now)
    change = BannerChanged(ChangeKind.MESSAGE_SHOWN, "b1", 2, banner, now)
    wire = {"error envelope": [json.dumps(envelope)], "event": [json.dumps(change_to_json(change))]}
    assert envelope["error"]["free_at"] == "2026-11-28T01:02:03.456789Z"
    assert_one_format(wire)
    with pytest.raises(BannerBusy) as rebuilt:
        unwrap(envelope)
    assert rebuilt.value.free_at == now
    assert change_from_json(change_to_json(change)) == change
