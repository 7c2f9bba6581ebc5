"""The server's WebSocket protocols below the app: uvicorn's, counted against a client's connections, and
the lighter one of device links, which also answers their handshake without reading the request again.

Both use uvicorn's protocol internals (0.54, the lock's version): tests/test_http_limits.py and
tests/api/test_device_link_costs.py cover them against a real server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import unquote

from uvicorn.protocols.utils import ClientDisconnected, get_client_addr, get_path_with_query_string
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import OPEN
from websockets.server import ServerProtocol
from websockets.utils import accept_key

if TYPE_CHECKING:
    from uvicorn._types import ASGIReceiveEvent, ASGISendEvent, WebSocketScope
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from ._connections import ConnectionGuard

#: uvicorn's WebSocket logger for device links: a child of its own, so that their "[accepted]" lines (one
#: a link, 2.5% of the server's CPU in a reconnect storm, bench/device_storm.py) cost one level check when
#: the access log is off.
DEVICE_LINK_LOG = logging.getLogger("uvicorn.error.devices")
#: The request target of a device link's upgrade (api/routes/devices.py), as uvicorn's parser gives it.
DEVICE_LINK_TARGET = b"/api/v1/devices/"
#: A handshake's Sec-WebSocket-Key: 16 bytes in base64 (RFC 6455 4.1).
_KEY_LENGTH = 24


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, whose connection counts against the client's limit until it closes
    (admitted and counted by GuardedHttpProtocol, which hands it over at the upgrade)."""

    guard: ClassVar[ConnectionGuard]

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.guard.release(self.client[0] if self.client else None)

    # Back-pressure on what the protocol writes by itself. uvicorn answers every ping with a pong below the
    # app, and keeps reading while the client reads none of them: a ping flood from a client that never
    # reads grew the server by 136 MB in 12 s (bench/stream_flood.py). So reading stops while writes are
    # paused (the transport's buffer is over its high-water mark) and resumes once they drain.

    def pause_writing(self) -> None:
        super().pause_writing()
        if not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if not self.read_paused and not self.transport.is_closing():
            self.transport.resume_reading()

    async def receive(self) -> ASGIReceiveEvent:
        """uvicorn's receive, except that reading resumes only while writes are not paused."""
        message = await self.queue.get()
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            if self.writable.is_set() and not self.transport.is_closing():
                self.transport.resume_reading()
        return message


class DeviceLinkProtocol(GuardedWebSocketProtocol):
    """The WebSocket protocol of a device link: what it keeps and does per link is as little as uvicorn
    allows.

    A server holds 20,000 of them (issue 16: at most 20 KB each), idle but for a heartbeat every ~10 s, and
    takes them all back in a reconnect storm:
    - the handshake is answered from the request uvicorn's HTTP protocol parsed (`take_over`); uvicorn
      wrote the request out again for `websockets` to parse again, ~15% of a storm's CPU. A request that
      is not a plain version-13 handshake still goes to `websockets`, which answers what is wrong with it;
    - no protocol pings: uvicorn's keepalive pinged every link every 20 s (1,000 pings a second at 20,000
      links) and held a timer each, while a device's heartbeats already prove it alive and the sweeper
      ends a silent link (realtime/_devices.py, docs/device-protocol.md);
    - what uvicorn's __init__ set on each connection but is the same for all (its settings, the keepalive's
      state) is on the class, and its asyncio.Queue and Event (four deques and an Event: ~3.7 KB) are the
      little of them uvicorn uses (`_OneReaderQueue`, `_Flag`).
    The server offers no extensions (uvicorn's permessage-deflate is off: cli/_uvicorn.py), so a plain
    handshake's answer names none.
    """

    logger = DEVICE_LINK_LOG  # its per-link INFO lines: off unless the access log is on (_serve.py)
    # uvicorn's keepalive and closing state, unused or the same for every link.
    close_timeout = 10.0
    ping_interval = ping_timeout = None
    ping_timer = pong_timer = pending_ping_payload = None
    ping_sent_at = last_ping_rtt = 0.0
    curr_msg_data_type: Literal["text", "bytes"] = "bytes"
    handshake_initiated = False
    initial_response = None
    close_timer = None
    #: The Sec-WebSocket-Accept of a handshake answered here, until the app accepts the link.
    _accept: bytes | None = None

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        # Not uvicorn's __init__ (see the class's docstring): it would make a ServerProtocol, a Queue and
        # an Event only for them to be replaced, and set 34 attributes a link, past the 30 keys CPython
        # shares between instances' dicts (a dict of its own is ~1 KB more a link).
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme: Literal["wss", "ws"] = "ws"
        self.queue = _OneReaderQueue()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]
        self.writable.set()
        self.handshake_complete = False
        self.close_sent = False
        self.disconnected = False
        self.read_paused = False
        self.frames: list[bytes] = []

    # What uvicorn's __init__ copied from the server's settings and state, read where they are kept.
    @property
    def root_path(self) -> str:  # type: ignore[override]
        return self.config.root_path

    @property
    def asgi_version(self) -> Literal["2.0", "3.0"]:  # type: ignore[override]
        return self.config.asgi_version

    @property
    def connections(self) -> set[Any]:  # type: ignore[override]
        return self.server_state.connections

    @property
    def tasks(self) -> set[asyncio.Task[None]]:  # type: ignore[override]
        return self.server_state.tasks

    @property
    def default_headers(self) -> list[tuple[bytes, bytes]]:  # type: ignore[override]
        return self.server_state.default_headers

    @classmethod
    def take_over(cls, http: HttpToolsProtocol) -> None:
        """Take over `http`'s connection, whose request head (a device link's upgrade) it has parsed."""
        http.connections.discard(http)
        protocol = cls(config=http.config, server_state=http.server_state, app_state=http.app_state)
        protocol.connections.add(protocol)
        protocol.transport = http.transport
        protocol.server, protocol.client = http.server, http.client
        request: dict[str, Any] = http.scope  # type: ignore[assignment]
        key = _handshake_key(request, request["headers"])
        if key is None:  # websockets reads the request again, and answers it
            protocol.conn = ServerProtocol(max_size=http.config.ws_max_size, logger=DEVICE_LINK_LOG)
            protocol.scheme = "wss" if request["scheme"] == "https" else "ws"
            protocol.data_received(_serialized(http.url, request))
        else:
            protocol.open(request, http.url, key)
        http.transport.set_protocol(protocol)

    def open(self, request: dict[str, Any], target: bytes, key: bytes) -> None:
        """Start the app on a plain handshake: uvicorn's `handle_connect`, from the HTTP request's scope
        and request target."""
        raw_path, _, query_string = target.partition(b"?")
        root_path = request["root_path"]
        self.conn = ServerProtocol(state=OPEN, max_size=self.config.ws_max_size, logger=DEVICE_LINK_LOG)
        self._accept = accept_key(key.decode()).encode()
        self.scheme = "wss" if request["scheme"] == "https" else "ws"
        self.scope: WebSocketScope = {
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
            "root_path": root_path,
            "path": root_path + unquote(raw_path.decode("ascii")),
            "raw_path": root_path.encode("ascii") + raw_path,
            "query_string": query_string,
            "headers": request["headers"],
            "subprotocols": [],
            "state": request["state"],  # the copy of the app's state uvicorn made for the request
            "extensions": {"websocket.http.response": {}},
        }
        self.queue.put_nowait({"type": "websocket.connect"})
        task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.on_task_complete)
        self.server_state.tasks.add(task)

    def start_keepalive(self) -> None:
        """No protocol pings (see the class's docstring)."""

    async def send(self, message: ASGISendEvent) -> None:
        if self._accept is None or message["type"] != "websocket.accept":
            await super().send(message)
            if message["type"] == "websocket.accept":  # uvicorn read the handshake's request and response
                self.request = self.response = None  # type: ignore[assignment]  # only to answer it
            return
        # uvicorn's accept, for a handshake answered here.
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        if self.logger.isEnabledFor(logging.INFO):
            path = get_path_with_query_string(self.scope)
            self.logger.info('%s - "WebSocket %s" [accepted]', get_client_addr(self.scope), path)
        if self.transport.is_closing():
            return
        head = [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"]
        head += [b"Sec-WebSocket-Accept: ", self._accept, b"\r\n"]
        for name, value in [*self.server_state.default_headers, *message.get("headers", ())]:
            head += [name, b": ", value, b"\r\n"]
        if subprotocol := message.get("subprotocol"):
            head += [b"Sec-WebSocket-Protocol: ", subprotocol.encode(), b"\r\n"]
        head.append(b"\r\n")
        self._accept = None
        self.handshake_complete = True
        self.transport.write(b"".join(head))


def _handshake_key(request: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The Sec-WebSocket-Key of a plain version-13 handshake (RFC 6455 4.2.1), else None. uvicorn's HTTP
    protocol checked `Upgrade: websocket` and `Connection: upgrade`."""
    if request["method"] != "GET" or request["http_version"] != "1.1":
        return None
    key = version = None
    for name, value in headers:  # uvicorn's names are lower-case
        if name == b"sec-websocket-key":
            if key is not None:
                return None
            key = value
        elif name == b"sec-websocket-version":
            if version is not None:
                return None
            version = value
    if version != b"13" or key is None or len(key) != _KEY_LENGTH:
        return None
    try:
        base64.b64decode(key, validate=True)
    except binascii.Error:
        return None
    return key


def _serialized(target: bytes, request: dict[str, Any]) -> bytes:
    """The request head again, as uvicorn writes it for `websockets` (0.54's `handle_websocket_upgrade`)."""
    output = [request["method"].encode(), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in request["headers"]:
        output += [name, b": ", value, b"\r\n"]
    output.append(b"\r\n")
    return b"".join(output)


class _OneReaderQueue:
    """asyncio.Queue as uvicorn's WebSocket protocol uses it (`put_nowait`, `get`, `empty`), for the one
    task that reads it."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)  # a message or two at most: uvicorn stops reading until this one is taken

    def empty(self) -> bool:
        return not self._items


class _Flag:
    """asyncio.Event as uvicorn's WebSocket protocol uses it (`set`, `clear`, `is_set`, `wait`)."""

    __slots__ = ("_on", "_waiters")

    def __init__(self) -> None:
        self._on = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._on

    def set(self) -> None:
        self._on = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._on = False

    async def wait(self) -> bool:
        while not self._on:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            await waiter
        return True
