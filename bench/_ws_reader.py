"""A minimal WebSocket client that only reads: a cheap stand-in for many subscribers in one load generator.

The `websockets` library costs about as much CPU per received frame as the server spends sending it, so
1,000 library clients on one CPU keep pace with the server with no slack, and their queueing shows up in
the latency measured. This reader is an asyncio Protocol that does the least RFC 6455 asks of a client
that receives: the opening handshake, unmasked server frames (no fragmentation: the server sends each
frame whole), pong for ping, close. It stamps CLOCK_MONOTONIC once per read, before parsing, so that a
frame's receipt time does not include the parsing of the frames read before it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

#: frame(opcode 1 payload, CLOCK_MONOTONIC ns of the read it came in)
OnText = Callable[[bytes, int], None]

_TEXT, _CLOSE, _PING, _PONG = 0x1, 0x8, 0x9, 0xA


def frame_head(buffer: bytearray) -> tuple[int, int, int] | None:
    """(opcode, payload start, payload length) of the unmasked frame at the start of `buffer`, once all of
    it has arrived; None while it is incomplete."""
    if len(buffer) < 2:
        return None
    opcode, length, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
    if length == 126:
        if len(buffer) < 4:
            return None
        length, start = struct.unpack_from("!H", buffer, 2)[0], 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        length, start = struct.unpack_from("!Q", buffer, 2)[0], 10
    return (opcode, start, length) if len(buffer) >= start + length else None


class HandshakeError(ConnectionError):
    """Raised when the server does not answer the upgrade with 101 Switching Protocols."""


class WebSocketReader(asyncio.Protocol):
    """One subscriber: calls `on_text` for every text frame; `closed` resolves when the connection ends."""

    def __init__(self, request: bytes, on_text: OnText) -> None:
        self.request = request
        self.on_text = on_text
        self.buffer = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        self.buffer += data
        if not self.upgraded.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[: self.buffer.find(b"\r\n")])
            if b" 101 " not in status + b" ":
                self.upgraded.set_exception(HandshakeError(status.decode(errors="replace")))
                assert self.transport is not None
                self.transport.close()
                return
            del self.buffer[: end + 4]
            self.upgraded.set_result(None)
        self._frames(now)

    def _frames(self, now: int) -> None:
        buffer = self.buffer
        while (head := frame_head(buffer)) is not None:
            opcode, start, length = head
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            if opcode == _TEXT:
                self.on_text(payload, now)
            elif opcode == _PING:
                self._send(_PONG, payload)
            elif opcode == _CLOSE:
                self._send(_CLOSE, payload[:2])
                assert self.transport is not None
                self.transport.close()

    def _send(self, opcode: int, payload: bytes) -> None:
        """A masked control frame (payload under 126 bytes), as a client must send."""
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert self.transport is not None
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)


async def open_reader(url: str, on_text: OnText) -> WebSocketReader:
    """Connect to ws://HOST:PORT/PATH and finish the opening handshake."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    _, reader = await loop.create_connection(
        lambda: WebSocketReader(request, on_text), parts.hostname, parts.port or 80
    )
    await reader.upgraded
    return reader
