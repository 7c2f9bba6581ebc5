"""A device link's handshake, answered below the app from the request uvicorn's HTTP protocol read
(cli/_websocket.py), byte by byte on a raw connection: what any WebSocket client checks, and what a request
that is not a plain handshake is answered (by `websockets`, as before)."""

from __future__ import annotations

import asyncio
import json

import pytest

#: RFC 6455 1.3's example: this key is answered with that accept value.
RFC_KEY, RFC_ACCEPT = "dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


async def handshake(server, banner_id: str, token: str, **headers: str):
    """Send a device link's upgrade request with `headers` over the defaults; return the answer's status
    line, its headers (names lower-case) and the open streams."""
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    fields = {
        "Host": f"{host}:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": RFC_KEY,
        "Sec-WebSocket-Version": "13",
        "Authorization": f"Bearer {token}",
        **{name.replace("_", "-"): value for name, value in headers.items()},
    }
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    writer.write(f"GET /api/v1/devices/{banner_id}/connect HTTP/1.1\r\n{head}\r\n".encode())
    answer = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode("latin-1")
    status, *lines = answer.strip().split("\r\n")
    found = {}
    for line in lines:
        name, _, value = line.partition(":")
        found[name.strip().lower()] = value.strip()
    return status, found, reader, writer


async def read_text_frame(reader: asyncio.StreamReader) -> str:
    first, second = await asyncio.wait_for(reader.readexactly(2), 10)
    assert first == 0x81, "a final text frame"
    size = second & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    return (await reader.readexactly(size)).decode()


async def test_a_plain_handshake_is_answered_as_rfc_6455_says_and_the_link_runs(start_server):
    server = await start_server()
    token = (await server.create("hs")).json()["device_token"]
    status, headers, reader, writer = await handshake(server, "hs", token)
    try:
        assert status == "HTTP/1.1 101 Switching Protocols"
        assert headers["upgrade"].lower() == "websocket"
        assert headers["connection"].lower() == "upgrade"
        assert headers["sec-websocket-accept"] == RFC_ACCEPT
        assert "sec-websocket-extensions" not in headers  # the server offers none
        assert json.loads(await read_text_frame(reader))["type"] == "display"
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Sec-WebSocket-Version": "8"}, "Sec-WebSocket-Version"),
        ({"Sec-WebSocket-Key": "not base64!"}, "Sec-WebSocket-Key"),
        ({"Sec-WebSocket-Key": "c2hvcnQ="}, "Sec-WebSocket-Key"),  # base64, but of 5 bytes, not 16
    ],
    ids=["old-version", "key-not-base64", "key-too-short"],
)
async def test_a_handshake_that_is_not_plain_is_refused_by_websockets_with_the_reason(
    start_server, headers, reason
):
    server = await start_server()
    token = (await server.create("hs")).json()["device_token"]
    answer, found, reader, writer = await handshake(server, "hs", token, **headers)
    try:
        assert answer == "HTTP/1.1 400 Bad Request"
        body = await asyncio.wait_for(reader.readexactly(int(found["content-length"])), 10)
        assert reason in body.decode()
    finally:
        writer.close()
    assert "hs" not in server.app.state.devices
