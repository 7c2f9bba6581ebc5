"""One abusive stream client against a real `airdisplay serve` process: the server's RSS stays bounded.

The attacker is a raw socket that speaks just enough RFC 6455 to send masked frames and reads nothing
while it floods (its receive buffer is 4 KB). It stops flooding after a fixed number of frames, or once
the server takes nothing more for a while (it stopped reading, or closed the connection). Then it reads
until every frame it sent has been answered or the server has ended the connection, so that whatever the
flood made the server hold was held by then; the server's peak RSS (VmHWM, reset just before the flood)
then tells what it cost.
bench/stream_flood.py measures the same attacks and more, for longer, and reports the figures.
"""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import free_port, spawn, stop, wait_ready

#: The largest subscription: 1,000 ids of 64 characters. Each `subscribed` reply lists them all (~67 KB).
IDS = [f"{i:04d}" + "f" * 60 for i in range(1000)]
#: Growth of the server's RSS allowed for one client, whatever it sends: generous, the design bound is a
#: few MB (docs/realtime.md "Limits"). Before the outbox was bounded these floods took 200 MB and more.
RSS_GROWTH_LIMIT_MB = 32
#: A send the server takes nothing of for this long ends the flood: it stopped reading.
SEND_WAIT = 2.0
#: Longest wait for the answers at the end.
READ_WAIT = 30.0
_TEXT, _CLOSE, _PING, _PONG = 0x1, 0x8, 0x9, 0xA


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for process {pid}")


def masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    keys = (mask * (length // 4 + 1))[:length]
    return head + mask + (int.from_bytes(payload) ^ int.from_bytes(keys)).to_bytes(length)


class Attacker:
    """A WebSocket client that floods without reading, then reads what it was sent."""

    def __init__(self, port: int, target: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while not head.endswith(b"\r\n\r\n"):  # byte by byte: nothing after the response head is read
            byte = self.sock.recv(1)
            assert byte, "the server closed the connection during the handshake"
            head += byte
        assert head.startswith(b"HTTP/1.1 101"), head
        self.sock.setblocking(False)
        self.buffer = bytearray()
        self.texts: list[bytes] = []  # the start of each text frame
        self.close_code: int | None = None
        self.pongs = 0
        self.ended = False

    def flood(self, frame: bytes, count: int) -> int:
        """Send `frame` up to `count` times as fast as the server takes it; the number sent whole."""
        data = memoryview(frame * count)
        sent = 0
        while sent < len(data):
            if not select.select([], [self.sock], [], SEND_WAIT)[1]:
                break  # the server stopped reading
            try:
                sent += self.sock.send(data[sent : sent + 65536])
            except OSError:
                break  # the server closed the connection
        return sent // len(frame)

    def read_until(self, done: Callable[[], bool]) -> None:
        """Read frames until `done()`, or the connection ends; fail after READ_WAIT seconds."""
        deadline = time.monotonic() + READ_WAIT
        while not (self.ended or done()):
            assert time.monotonic() < deadline, f"no end after {READ_WAIT} s: {len(self.texts)} frames read"
            if not select.select([self.sock], [], [], 0.5)[0]:
                continue
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                data = b""
            if not data:
                self.ended = True
            self.buffer += data
            self._parse()

    def _parse(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 2:
            opcode, length, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, start = struct.unpack_from("!H", buffer, 2)[0], 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, start = struct.unpack_from("!Q", buffer, 2)[0], 10
            if len(buffer) < start + length:
                return
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            if opcode == _TEXT:
                self.texts.append(payload[:200])  # enough to tell the frames apart; a flood is big
            elif opcode == _PONG:
                self.pongs += 1
            elif opcode == _CLOSE:
                self.close_code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
                self.ended = True

    def count(self, kind: bytes) -> int:
        return sum(1 for text in self.texts if text.startswith(b'{"type": "' + kind + b'"'))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve(tmp_path):
    """A real `airdisplay serve` on a free port, warmed up by one well-behaved client: its (pid, port)."""
    port = free_port()
    proc = spawn("--port", str(port), "--data-dir", str(tmp_path / "data"))
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}")
        warm = Attacker(port, "/api/v1/stream?banners=" + ",".join(IDS))
        last = b'"banner_id":"' + IDS[-1].encode()
        warm.read_until(lambda: any(last in text for text in warm.texts[-1:]))
        warm.close()
        yield proc.pid, port
    finally:
        stop(proc)


def _frame(**frame: object) -> bytes:
    return masked(_TEXT, json.dumps(frame).encode())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("frame", "count"),
    [
        (_frame(type="unsubscribe", banners=[]), 3000),  # 36 bytes in, the whole ~67 KB list out
        (_frame(type="subscribe", banners=IDS), 1000),  # the same 1,000 ids again and again
    ],
    ids=["unsubscribe", "subscribe"],
)
def test_a_control_frame_flood_without_reading_leaves_server_memory_bounded(serve, frame, count):
    pid, port = serve
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM from here: the peak of this flood
    before = rss_mb(pid)
    attacker = Attacker(port, "/api/v1/stream?banners=" + ",".join(IDS))
    try:
        sent = attacker.flood(frame, count)
        # Every frame sent answered (a `subscribed` each, or fewer coalesced), or the connection ended.
        attacker.read_until(lambda: attacker.count(b"subscribed") >= sent + 1)
        peak = rss_mb(pid, "VmHWM")
    finally:
        attacker.close()
    assert peak - before < RSS_GROWTH_LIMIT_MB, (
        f"{sent} frames took the server from {before:.0f} to {peak:.0f} MB RSS "
        f"({attacker.count(b'subscribed')} `subscribed` replies, close code {attacker.close_code})"
    )
    assert attacker.ended, "the server kept a flooding connection open"


@pytest.mark.slow
def test_a_ping_flood_without_reading_leaves_server_memory_bounded(serve):
    """uvicorn answers each RFC 6455 ping with a pong below the app: a client that reads none of them must
    not make the server buffer them all (cli/_connections.py stops reading while writes are paused)."""
    pid, port = serve
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = rss_mb(pid)
    attacker = Attacker(port, "/api/v1/stream")
    try:
        sent = attacker.flood(masked(_PING, b"p" * 125), 600_000)
        attacker.read_until(lambda: attacker.pongs >= sent)
        peak = rss_mb(pid, "VmHWM")
    finally:
        attacker.close()
    assert peak - before < RSS_GROWTH_LIMIT_MB, (
        f"{sent} pings took the server from {before:.0f} to {peak:.0f} MB RSS ({attacker.pongs} pongs read)"
    )
