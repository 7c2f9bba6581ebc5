"""How `airdisplay serve` runs uvicorn: sockets bound beforehand, connection limits (_connections.py),
WebSocket settings, log, collector."""

from __future__ import annotations

import gc
import logging
import socket
from typing import Any

import uvicorn
import websockets.http11

from ._connections import MAX_WEBSOCKET_TARGET, ConnectionGuard, ConnectionLimits, guarded_protocols

#: Largest WebSocket frame a client may send: a subscribe frame for 1,000 ids of 64 characters fits.
WS_MAX_FRAME = 256 * 1024
#: Longest request line of a WebSocket handshake: a target GuardedHttpProtocol lets through, with room for
#: the method and the HTTP version. websockets' own limit is 8 KiB, and uvicorn answers nothing at all to a
#: handshake over it (a stream's `?banners=` with 1,000 ids of 64 characters is 65,000 bytes).
WS_MAX_REQUEST_LINE = MAX_WEBSOCKET_TARGET + 64
#: Connections the kernel queues for accept(). A fleet reconnecting at once arrives faster than one process
#: accepts: uvicorn's 2,048 overflowed in a storm of 10,000 device links (bench/devices.py). Linux caps it
#: at net.core.somaxconn (4,096 by default).
LISTEN_BACKLOG = 65_535
#: In-flight requests get this long to finish on SIGTERM/Ctrl+C before streams are cut.
SHUTDOWN_GRACE_SECONDS = 5


def listen(host: str, port: int) -> list[socket.socket]:
    """Bind the server's sockets before anything starts, so a port in use stops start-up with one line.

    What asyncio's create_server would do inside uvicorn (which logs a failure in five lines and exits 3):
    a socket for every address `host` resolves to, SO_REUSEADDR so a restart need not wait out TIME_WAIT,
    IPv6 sockets for IPv6 only.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Server(uvicorn.Server):
    """uvicorn's server on sockets bound beforehand (`listen`), saying where it listens once it does."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        for sock in sockets or []:
            host, port = sock.getsockname()[:2]
            url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
            logging.getLogger("uvicorn.error").info("AirDisplay running on %s (Press CTRL+C to quit)", url)


#: What uvicorn and websockets log at INFO for each WebSocket, through uvicorn's error logger: access-log
#: lines in all but name, two or three per banner link, so a fleet reconnecting filled the log (820 lines
#: in a short run, issue 13). Without --access-log they are DEBUG.
WEBSOCKET_ACCESS_LINES = frozenset(
    {
        '%s - "WebSocket %s" [accepted]',
        '%s - "WebSocket %s" 403',
        '%s - "WebSocket %s" %d',
        "connection open",
        "connection closed",
        "connection rejected (%d %s)",
        "HTTP response sent (%d %s)",
    }
)


class QuietWebSockets(logging.Filter):
    """Moves uvicorn's per-WebSocket lines (WEBSOCKET_ACCESS_LINES) from INFO to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not (
            isinstance(record.msg, str) and record.msg in WEBSOCKET_ACCESS_LINES
        ):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


#: Young-generation threshold. Each active banner actor holds a dozen tracked objects; with Python's default
#: (700) the collector ran a full pass every second under load, about 10% of the CPU (bench/submit_vs_bare.py
#: profile), and with 10,000 banner links full passes took up to 860 ms (p99 delivery 1.8 s, vs 0.9 s with
#: this threshold; bench/devices.py).
GC_GEN0_THRESHOLD = 50_000


def uvicorn_options(guard: ConnectionGuard | None = None) -> dict[str, Any]:
    """How the server limits connections (`guard`; default limits without), runs its WebSockets and shuts
    down (also used by the tests' servers)."""
    # websockets reads this module global at each handshake; it has no per-server setting.
    websockets.http11.MAX_LINE_LENGTH = max(websockets.http11.MAX_LINE_LENGTH, WS_MAX_REQUEST_LINE)
    return {
        # httptools, guarded (cli/_connections.py); its WebSocket protocol is websockets-sansio's: 10% less
        # memory per connection than the legacy impl (bench/devices.py).
        **guarded_protocols(guard or ConnectionGuard(ConnectionLimits())),
        # permessage-deflate keeps a zlib state per connection: 843 MB vs 354 MB RSS for 5,000 banner
        # links (bench/devices.py); our frames are small, and compressing them costs more than it saves.
        "ws_per_message_deflate": False,
        "ws_max_size": WS_MAX_FRAME,
        "backlog": LISTEN_BACKLOG,
        # Open SSE streams would otherwise hold a graceful shutdown forever.
        "timeout_graceful_shutdown": SHUTDOWN_GRACE_SECONDS,
    }


def tune_garbage_collector() -> None:
    """Move start-up objects out of the collector's way and collect less often (see GC_GEN0_THRESHOLD)."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
