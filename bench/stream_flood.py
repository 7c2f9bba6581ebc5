"""Server memory under one abusive stream client: floods of control frames, pings, clients that stop reading.

Each attack runs against a fresh `airdisplay serve` subprocess (submit limit off, so the event load below
is not throttled). The attacker is one raw socket that speaks just enough RFC 6455 to send masked frames,
with a 4 KB receive buffer, and reads only where the attack says so; small frames go out in batches of
~64 KB, as fast as the server reads them. Before an attack well-behaved clients subscribe to the same
1,000 ids over WebSocket and SSE and read everything (so the code paths are warm); then the server's peak
RSS is reset (`5` to /proc/PID/clear_refs) and its VmRSS read from /proc/PID/status ("before"). The attack
runs for `--seconds`; the attacker then reads what the server still has for it (up to 5 s), to learn how
the connection ended, and hangs up. "After" is the server's VmRSS a second later, "peak" its VmHWM then
(the highest RSS since the reset). A run stops early if the server passes 3,000 MB.

Attacks on `/api/v1/stream` (subscribed once to 1,000 ids of 64 characters, the largest subscription):
- unsubscribe: `{"type":"unsubscribe","banners":[]}` as fast as the server takes it, never reading (each
  such frame was answered with the whole ~67 KB `subscribed` list); and the same reading 4 KB every 200 ms;
- subscribe: the same 1,000 ids again and again; set: 1,000 fresh ids each time (each activates actors);
- bad frames: `{"type":"ping"}` (not a client frame: each is answered with an error frame);
- ping: RFC 6455 ping frames with a 125-byte payload (uvicorn answers each with a pong).
And the two streams without client input, while a load generator changes all 1,000 banners (register,
then show and clear messages in turn): SSE `/api/v1/events?banners=...` and the legacy `/ws`, both never
reading; plus the same event load with no stream client at all, the baseline for those two.

    uv run python bench/stream_flood.py [--seconds 12] [--only unsubscribe,sse] [--json PATH]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import select
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from _fleet import NO_SUBMIT_LIMIT, ServerProcess, airdisplay_command, free_port
from _report import conditions, machine, rss_mb, stop_on_signals, table, wait_for_quiet_machine, write_json
from _ws_reader import frame_head

#: The largest subscription: 1,000 ids of 64 characters (docs/realtime.md).
IDS = [f"{i:04d}" + "f" * 60 for i in range(1000)]
#: The attacker's receive buffer: small, so the kernel holds little of what the server sends it.
RECEIVE_BUFFER = 4096
#: A send that the server takes nothing of for this long counts as refused (the server stopped reading).
SEND_WAIT = 0.2
#: Small frames go out in batches of about this many bytes: one send carries many frames.
SEND_BATCH = 64 * 1024
#: The slow reader's pace: 4 KB every 200 ms (the issue's "reads a little every 200 ms").
SLOW_READ_BYTES, SLOW_READ_EVERY = 4096, 0.2
#: How long the attacker reads at the end to learn how the connection ended, and at most how much.
DRAIN_SECONDS, DRAIN_LIMIT = 5.0, 512 * 1024 * 1024
#: A run stops early when the server passes this RSS, so that an unbounded server does not take the machine.
RSS_CAP_MB = 3000.0
_TEXT, _CLOSE, _PING = 0x1, 0x8, 0x9


class RawWebSocket:
    """One attacking connection: sends masked frames as fast as the server takes them, reads on demand."""

    def __init__(self, port: int, target: str) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while not head.endswith(b"\r\n\r\n"):  # byte by byte: nothing after the response head is read
            byte = sock.recv(1)
            if not byte:
                raise ConnectionError("closed during the handshake")
            head += byte
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        sock.setblocking(False)
        self.sock = sock
        self.outgoing = bytearray()
        self.incoming = bytearray()
        self.frames_sent = 0
        self.last_accepted = time.monotonic()
        self.ended: str | None = None  # how the server ended the connection, once known

    def queue(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        keys = (mask * (length // 4 + 1))[:length]
        masked = (int.from_bytes(payload) ^ int.from_bytes(keys)).to_bytes(length)
        self.outgoing += head + mask + masked
        self.frames_sent += 1

    def flush(self, wait: float) -> bool:
        """Send what is queued; False when the server took nothing more within `wait` seconds."""
        deadline = time.monotonic() + wait
        while self.outgoing and self.ended is None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [self.sock], [], left)[1]:
                return False
            try:
                sent = self.sock.send(self.outgoing)
            except OSError as exc:
                self.ended = f"reset while sending ({exc.__class__.__name__})"
                return False
            del self.outgoing[:sent]
            self.last_accepted = time.monotonic()
        return self.ended is None

    def read_some(self, limit: int) -> int:
        try:
            data = self.sock.recv(limit)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self.ended = self.ended or f"reset ({exc.__class__.__name__})"
            return 0
        if not data:
            self.ended = self.ended or "closed without a close frame"
        self.incoming += data
        return len(data)

    def drain(self) -> int:
        """Read what the server still has for us; note the close code if a close frame comes."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        deadline = time.monotonic() + DRAIN_SECONDS
        total = 0
        while self.ended is None and total < DRAIN_LIMIT and time.monotonic() < deadline:
            if select.select([self.sock], [], [], 0.1)[0]:
                total += self.read_some(1 << 20)
                self._parse()
        self.ended = self.ended or f"still open after reading {total / 1e6:.1f} MB for {DRAIN_SECONDS:g} s"
        return total

    def _parse(self) -> None:
        buffer = self.incoming
        while (head := frame_head(buffer)) is not None:
            opcode, start, length = head
            if opcode == _CLOSE:
                code = struct.unpack_from("!H", buffer, start)[0] if length >= 2 else 1005
                reason = bytes(buffer[start + 2 : start + length]).decode(errors="replace")
                self.ended = f"closed by the server: {code} {reason}".strip()
            del buffer[: start + length]

    def close(self) -> None:
        self.sock.close()


@dataclass
class Attack:
    """What one attack sends, and whether it reads."""

    name: str
    path: str  # "stream", "sse", "legacy" or "none"
    frames: Callable[[int], tuple[int, bytes]] | None = None  # frame number -> (opcode, payload)
    reads_slowly: bool = False
    events: bool = False  # a load generator changes all 1,000 banners meanwhile


def _text(frame: dict[str, Any]) -> tuple[int, bytes]:
    return _TEXT, json.dumps(frame, separators=(",", ":")).encode()


def _fresh_ids(number: int) -> list[str]:
    return [f"{number:06d}{i:04d}" + "e" * 54 for i in range(1000)]


_UNSUBSCRIBE = _text({"type": "unsubscribe", "banners": []})
_SUBSCRIBE = _text({"type": "subscribe", "banners": IDS})
_BAD = _text({"type": "ping"})
_PING_FRAME = (_PING, b"p" * 125)

ATTACKS = {
    "unsubscribe": Attack("unsubscribe flood, not reading", "stream", lambda n: _UNSUBSCRIBE),
    "unsubscribe-slow": Attack(
        "unsubscribe flood, reading 4 KB every 200 ms", "stream", lambda n: _UNSUBSCRIBE, reads_slowly=True
    ),
    "subscribe": Attack("subscribe flood (the same 1,000 ids), not reading", "stream", lambda n: _SUBSCRIBE),
    "set": Attack(
        "set flood (1,000 new ids each), not reading",
        "stream",
        lambda n: _text({"type": "set", "banners": _fresh_ids(n)}),
    ),
    "bad": Attack('bad-frame flood (`{"type":"ping"}`), not reading', "stream", lambda n: _BAD),
    "ping": Attack("RFC 6455 ping flood (125-byte payload), not reading", "stream", lambda n: _PING_FRAME),
    "sse": Attack("SSE, 1,000 banners, not reading, banners changing", "sse", events=True),
    "legacy": Attack("legacy /ws, not reading, banners changing", "legacy", events=True),
    "events": Attack("banners changing, no stream client (baseline of the two above)", "none", events=True),
}


@dataclass
class Outcome:
    name: str
    before_mb: float
    peak_mb: float
    after_mb: float
    frames_sent: int = 0
    sends_last_accepted_s: float | None = None
    events: int = 0
    ended: str = ""
    stopped_early: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.before_mb


class EventLoad:
    """Shows and clears messages on the 1,000 banners in turn from a thread: a steady stream of events."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30)
        self.events = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def register(self) -> None:
        for banner_id in IDS:
            response = self.client.post("/api/v1/banners", json={"id": banner_id, "name": "x" * 100})
            response.raise_for_status()

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for banner_id in IDS:
                if self._stop.is_set():
                    return
                self.client.post(f"/api/v1/banners/{banner_id}/message", json={"text": "flood " * 10})
                self.client.delete(f"/api/v1/banners/{banner_id}/message")
                self.events += 2

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()


def warm_up(port: int) -> None:
    """Well-behaved clients: one subscribes to the 1,000 ids over WebSocket, one over SSE; each reads until
    the last banner's frame (so the attack does not measure the first use of these code paths)."""
    client = RawWebSocket(port, "/api/v1/stream")
    client.queue(*_SUBSCRIBE)
    client.flush(10)
    _read_until(client.sock, f'"banner_id":"{IDS[-1]}"'.encode())
    client.close()
    with open_sse(port) as sse:
        _read_until(sse, f"id: {IDS[-1]}:".encode())


def _read_until(sock: socket.socket, marker: bytes) -> None:
    sock.setblocking(False)
    seen = b""
    deadline = time.monotonic() + 30
    while marker not in seen:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the warm-up never saw {marker!r}")
        if select.select([sock], [], [], 0.1)[0]:
            seen = seen[-len(marker) :] + sock.recv(1 << 20)


def reset_peak(pid: int) -> None:
    """Set the process's VmHWM to its current RSS (Linux 4.0+), so that "peak" is the attack's own."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def open_sse(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /api/v1/events?banners={','.join(IDS)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def run_attack(attack: Attack, seconds: float, tmp: Path) -> Outcome:
    port = free_port()
    argv = [*airdisplay_command(), "serve", "--port", str(port), "--data-dir", str(tmp / "data")]
    server = ServerProcess(attack.name, [*argv, *NO_SUBMIT_LIMIT], port, tmp / "server.log")
    server.start()
    load: EventLoad | None = None
    client: RawWebSocket | None = None
    sse: socket.socket | None = None
    try:
        try:
            server.wait_ready()
        except RuntimeError:
            print(server.log_path.read_text()[-3000:], file=sys.stderr)  # the log goes with the directory
            raise
        if attack.events:
            load = EventLoad(server.base_url)
            load.register()
        warm_up(port)
        time.sleep(1)  # let the warm-up's connection close and its frames be freed
        reset_peak(server.pid)
        before = rss_mb(server.pid)
        started = time.monotonic()
        if attack.path == "stream":
            client = RawWebSocket(port, "/api/v1/stream")
            client.queue(*_SUBSCRIBE)
        elif attack.path == "legacy":
            client = RawWebSocket(port, "/ws")
        elif attack.path == "sse":
            sse = open_sse(port)
        if load is not None:
            load.start()
        number, next_read, stopped_early = 0, started + SLOW_READ_EVERY, False
        while (now := time.monotonic()) < started + seconds:
            if rss_mb(server.pid) > RSS_CAP_MB:
                stopped_early = True
                break
            if client is None or attack.frames is None:
                time.sleep(0.05)
                continue
            if attack.reads_slowly and now >= next_read:
                client.read_some(SLOW_READ_BYTES)
                next_read += SLOW_READ_EVERY
            if client.flush(SEND_WAIT):
                while len(client.outgoing) < SEND_BATCH:
                    number += 1
                    client.queue(*attack.frames(number))
            elif client.ended is not None:
                time.sleep(0.05)
        outcome = Outcome(attack.name, before, 0.0, 0.0, stopped_early=stopped_early)
        if client is not None:
            outcome.frames_sent = client.frames_sent
            outcome.sends_last_accepted_s = client.last_accepted - started
            client.drain()
            outcome.ended = client.ended or ""
            client.close()
        if sse is not None:
            outcome.ended = "open (the client read nothing)"
            sse.close()
        if load is not None:
            load.stop()
            outcome.events = load.events
            load = None
        time.sleep(1)
        outcome.after_mb = rss_mb(server.pid)
        outcome.peak_mb = rss_mb(server.pid, "VmHWM")  # the server's peak, the attack's end included
        return outcome
    finally:
        if load is not None:
            load.stop()
        if client is not None:
            client.close()
        if sse is not None:
            sse.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each attack")
    parser.add_argument("--only", help=f"comma-separated attacks: {', '.join(ATTACKS)}")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine first")
    parser.add_argument("--max-wait", type=float, default=600.0, help="longest wait for a quiet machine (s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(ATTACKS)
    unknown = set(names) - set(ATTACKS)
    if unknown:
        parser.error(f"unknown attack(s): {', '.join(sorted(unknown))}")
    stop_on_signals()
    start = conditions() if args.no_wait else wait_for_quiet_machine(args.max_wait)
    outcomes: list[Outcome] = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix="adflood-") as tmp:
            outcomes.append(run_attack(ATTACKS[name], args.seconds, Path(tmp)))
        print(f"{name}: {outcomes[-1]}", file=sys.stderr)
    print(f"## Server memory under one abusive stream client ({args.seconds:g} s per attack)\n")
    print(f"At the start: {start}. A fresh `airdisplay serve` per attack; RSS of the server in MB.\n")
    print(
        table(
            ("attack", "before", "peak", "growth", "after", "frames sent", "sends last taken", "ended"),
            [
                (
                    o.name,
                    f"{o.before_mb:.0f}",
                    f"{o.peak_mb:.0f}" + (" (cap hit)" if o.stopped_early else ""),
                    f"{o.growth_mb:.1f}",
                    f"{o.after_mb:.0f}",
                    f"{o.frames_sent:,}" if o.frames_sent else (f"{o.events:,} events" if o.events else "-"),
                    "-" if o.sends_last_accepted_s is None else f"{o.sends_last_accepted_s:.1f} s",
                    o.ended or "-",
                )
                for o in outcomes
            ],
        )
    )
    print()
    print(machine())
    write_json(
        args.json,
        "stream_flood",
        {
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "attacks": [
                {
                    "attack": o.name,
                    "rss_before_mb": round(o.before_mb, 1),
                    "rss_peak_mb": round(o.peak_mb, 1),
                    "rss_growth_mb": round(o.growth_mb, 1),
                    "rss_after_mb": round(o.after_mb, 1),
                    "frames_sent": o.frames_sent,
                    "events": o.events,
                    "sends_last_accepted_s": o.sends_last_accepted_s,
                    "ended": o.ended,
                    "stopped_at_rss_cap": o.stopped_early,
                }
                for o in outcomes
            ],
            "conditions": {"at_start": start},
        },
    )


if __name__ == "__main__":
    main()
