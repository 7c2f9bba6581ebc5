"""Limits below the app, in uvicorn's HTTP protocol: request head size and deadline, connections per client.

uvicorn's httptools protocol reads a request head of any size and waits for it forever: a 64 MiB header
was answered 200 (four at once took the server from 57 to 380 MB), and 1,100 connections that sent
nothing used up a default limit of 1,024 open files, so that no health probe was answered (issue 18).
GuardedHttpProtocol adds, for a few attribute checks per read and a timer per connection:

- a request target over MAX_HTTP_TARGET (a WebSocket handshake's: MAX_WEBSOCKET_TARGET) is answered 414,
  header fields over MAX_HEADER_BYTES 431, as soon as the bytes received pass the limit (the rest is
  never read);
- a connection has `header_seconds` to send a complete request head, from when it opens or from the first
  byte of a later request; then it is closed, with 408 if a request had begun (a keep-alive connection
  idle after a response is closed by uvicorn after 5 s);
- one client address holds at most `per_client` connections, WebSocket streams and device links included
  (GuardedWebSocketProtocol keeps an upgraded connection counted); the next is answered 429 with
  Retry-After and closed at once, before its request is parsed. Trusted proxies are not capped: their
  connections carry many clients.

h11 (uvicorn's other protocol) has a head size limit (h11_max_incomplete_event_size, request line
included) but no deadline either, answers 400 to an oversized head, and served 45% fewer requests a
second (bench/http_attacks.py), hence a subclass of httptools'. It uses uvicorn's protocol internals
(0.54, the lock's version): tests/test_http_limits.py covers them against a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import httptools
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..access import ConnectionLimiter
from ..config import DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS_PER_CLIENT, Settings
from ._open_files import log_connection_capacity
from ._websocket import DEVICE_LINK_TARGET, DeviceLinkProtocol, GuardedWebSocketProtocol

if TYPE_CHECKING:
    from ..api._metrics import ServiceMetrics

log = logging.getLogger("airdisplay")

#: Longest request target (path and query) of a WebSocket handshake: a stream's `?banners=` with 1,000 ids
#: of 64 characters (65,000 bytes) fits, with room to spare. Longer ones get 414.
MAX_WEBSOCKET_TARGET = 72 * 1024
#: Longest target of any other request: httptools parses no longer URL (its offsets are 16-bit), and
#: uvicorn answered a longer one 400 "Invalid HTTP request"; here it gets 414. An SSE stream's `?banners=`
#: of 1,000 ids of 64 characters fits.
MAX_HTTP_TARGET = 65_535
#: Header fields of one request, besides the request line, counted as sent (name, value, ": " and CRLF).
#: A browser sends under 2 KiB, a long cookie jar 8 KiB; 64 KiB is what most servers and proxies allow at
#: most (nginx's large_client_header_buffers 4 x 8k is 32 KiB). Bigger heads get 431.
MAX_HEADER_BYTES = 64 * 1024
#: Heads of at most this many bytes (nearly every request) are not measured further.
_UNMEASURED_HEAD = min(MAX_HTTP_TARGET, MAX_HEADER_BYTES)
#: Retry-After of a connection refused at the client's limit: a client should let some of its own close.
CONNECTION_RETRY_AFTER = 5
#: Warnings about clients at their limit: at most one per interval, saying how many were refused.
REFUSAL_LOG_INTERVAL = 60.0


class TrustedAddresses:
    """Addresses in uvicorn's --forwarded-allow-ips syntax: IPs, networks and "*", comma-separated."""

    def __init__(self, spec: str | None = None) -> None:
        entries = [entry.strip() for entry in (spec or "").split(",") if entry.strip()]
        self.everyone = "*" in entries
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in entries:
            with contextlib.suppress(ValueError):  # "*", or a Unix socket's name: no TCP peer has it
                self.networks.append(ipaddress.ip_network(entry, strict=False))

    def __contains__(self, host: str) -> bool:
        if self.everyone or not self.networks:
            return self.everyone
        return self._matches(host)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one instance per server, for its life
    def _matches(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What GuardedHttpProtocol enforces."""

    #: Connections per client address; 0: no limit.
    per_client: int = DEFAULT_MAX_CONNECTIONS_PER_CLIENT
    header_seconds: float = DEFAULT_HEADER_TIMEOUT
    #: Peers not capped: trusted proxies (and daprd, in Dapr mode).
    uncapped: TrustedAddresses = TrustedAddresses()
    #: IPv6 clients are counted by their network of this many bits, as by the submit and stream limits
    #: (--rate-limit-ipv6-prefix): one host may pick a new address of its /64 for every connection.
    ipv6_prefix: int = 64

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        """The limits `settings` set. Trusted proxies carry many clients; daprd (Dapr mode) is the app's
        sidecar, on loopback, and carries every actor call."""
        uncapped = settings.forwarded_allow_ips or ""
        if settings.runtime == "dapr":
            uncapped += ",127.0.0.0/8,::1"
        return cls(
            settings.max_connections_per_client,
            settings.header_timeout,
            TrustedAddresses(uncapped),
            settings.rate_limit_ipv6_prefix,
        )


def _problem(status: int, reason: str, kind: str, detail: str, headers: dict[str, str]) -> bytes:
    """A complete problem+json response that closes the connection."""
    from ..api.problems import PROBLEM_BASE, PROBLEM_JSON  # the web stack only when serving (CLI start-up)

    body = json.dumps(
        {"type": PROBLEM_BASE + kind, "title": reason, "status": status, "detail": detail}
    ).encode()
    fields = {
        "content-type": PROBLEM_JSON,
        "content-length": str(len(body)),
        "connection": "close",
        **headers,
    }
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return head.encode("latin-1") + b"\r\n" + body


class ConnectionGuard:
    """One server's connections by client address, its refusal answers, and what it refused.

    `refused` is called with the reason of each refusal: too_many_connections, uri_too_long,
    header_too_large, header_timeout.
    """

    def __init__(self, limits: ConnectionLimits, refused: Callable[[str], None] | None = None) -> None:
        self.limits = limits
        self.open = 0
        #: Connections the open-file limit leaves room for (None: no limit), once `connection_guard` knows.
        self.capacity: int | None = None
        # Counts per client as the stream limit does: an IPv6 client by its network (`ipv6_prefix`).
        self._per_client = ConnectionLimiter(max(limits.per_client, 1), ipv6_prefix=limits.ipv6_prefix)
        self._refused = refused or (lambda reason: None)
        self._unlogged_refusals = 0
        self._logged_at = -REFUSAL_LOG_INTERVAL
        self.too_many_connections = _problem(
            429,
            "Too Many Requests",
            "too-many-connections",
            f"a client address may hold at most {limits.per_client} connections; close one first",
            {"retry-after": str(CONNECTION_RETRY_AFTER)},
        )
        self.uri_too_long = _problem(
            414,
            "URI Too Long",
            "uri-too-long",
            f"request targets are limited to {MAX_HTTP_TARGET} bytes "
            f"({MAX_WEBSOCKET_TARGET} for a WebSocket handshake)",
            {},
        )
        self.header_too_large = _problem(
            431,
            "Request Header Fields Too Large",
            "header-too-large",
            f"request header fields are limited to {MAX_HEADER_BYTES} bytes",
            {},
        )
        self.header_timeout = _problem(
            408,
            "Request Timeout",
            "header-timeout",
            f"a request head must arrive within {limits.header_seconds:g} s",
            {},
        )

    def _capped(self, host: str | None) -> str | None:
        """`host`, if the per-client limit applies to it."""
        if host is None or not self.limits.per_client or host in self.limits.uncapped:
            return None
        return host

    def admit(self, host: str | None) -> bool:
        """Count a new connection from `host`; False (and counted as refused) at the client's limit."""
        client = self._capped(host)
        if client is not None and not self._per_client.acquire(client):
            self.refuse("too_many_connections")
            self._log_refusal(client)
            return False
        self.open += 1
        return True

    def release(self, host: str | None) -> None:
        """Uncount a connection `admit` counted (an upgraded one when its WebSocket protocol ends)."""
        self.open -= 1
        client = self._capped(host)
        if client is not None:
            self._per_client.release(client)

    def refuse(self, reason: str) -> None:
        self._refused(reason)

    def _log_refusal(self, host: str) -> None:
        self._unlogged_refusals += 1
        now = time.monotonic()
        if now - self._logged_at >= REFUSAL_LOG_INTERVAL:
            log.warning(
                "client %s holds %d connections, its limit: %d refused with 429 in the last minute "
                "(a fleet behind one address needs a higher --max-connections-per-client)",
                host,
                self.limits.per_client,
                self._unlogged_refusals,
            )
            self._logged_at, self._unlogged_refusals = now, 0


def _address(info: Any) -> tuple[str, int] | None:
    """Host and port of an IPv4 or IPv6 socket address (the latter has two more fields)."""
    if isinstance(info, tuple | list) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return None


class _HeadRefused(Exception):
    """Raised when a limit answered a request, from a parser callback: httptools then stops parsing."""


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of `guard` (see the module's docstring)."""

    guard: ClassVar[ConnectionGuard]
    #: The WebSocket protocol of device links (upgrades to DEVICE_LINK_TARGET...), lighter than streams'.
    device_ws: ClassVar[type[DeviceLinkProtocol] | None] = None
    # Slots, not the instance dict: uvicorn's protocol has 28 attributes, and 7 more would take its dict
    # past CPython's 30 shared keys, to a slower layout for every attribute uvicorn reads per request.
    __slots__ = (
        "_host",
        "_counted",
        "_refused",
        "_reading_head",
        "_head_bytes",
        "_read_bytes",
        "_head_deadline",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._host: str | None = None  # the client address this connection is counted under
        self._counted = False
        self._refused = False  # answered by a limit: the rest of what the client sends is dropped
        self._reading_head = False
        self._head_bytes = 0  # received since the read in which the current head began
        self._read_bytes = 0  # of the read being parsed
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # uvicorn's, but for the addresses: it reads them from a socket object uvloop makes for the asking,
        # 27 µs a connection against 9 µs for the transport's `sockname` and `peername` (2-4% of a device
        # reconnect storm's CPU, bench/device_storm.py --profile).
        self.connections.add(self)
        self.transport = transport
        self.flow = FlowControl(transport)
        local, remote = transport.get_extra_info("sockname"), transport.get_extra_info("peername")
        self.server = (local, None) if isinstance(local, str) else _address(local)
        self.client = _address(remote)
        self.scheme = "https" if transport.get_extra_info("sslcontext") else "http"
        self._host = self.client[0] if self.client else None
        if not self.guard.admit(self._host):
            self._refuse(self.guard.too_many_connections)
            return
        self._counted = True
        self._head_deadline = self.loop.call_later(self.guard.limits.header_seconds, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        if self._counted:
            self._counted = False
            self.guard.release(self._host)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, plus the head's size and deadline checks after each read."""
        if self._refused:
            return
        self._unset_keepalive_if_required()
        self._read_bytes = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if not self._refused:  # else a limit answered from a parser callback (on_headers_complete)
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        if self._reading_head:
            self._head_bytes += len(data)
            if self._head_bytes > _UNMEASURED_HEAD and self._refuse_large_head(
                self._head_bytes - len(self.url)
            ):
                return
        elif self.cycle is None or not self.cycle.response_complete or self.transport.is_closing():
            return  # a request in progress: its body and its response are the app's
        if self._head_deadline is None:  # a head begun, or bytes before one on an idle keep-alive connection
            self._head_deadline = self.loop.call_later(self.guard.limits.header_seconds, self._head_timed_out)

    def on_message_begin(self) -> None:
        HttpToolsProtocol.on_message_begin(self)  # not super(): a per-request path, and this is faster
        self._reading_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._reading_head = False
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        # The head lies within the earlier reads since it began and this one.
        if self._head_bytes + self._read_bytes > _UNMEASURED_HEAD and self._refuse_large_head(
            sum(len(name) + len(value) + 4 for name, value in self.headers),
            MAX_WEBSOCKET_TARGET if self.parser.should_upgrade() else MAX_HTTP_TARGET,
        ):
            raise _HeadRefused  # stops the parser; data_received sees the refusal
        HttpToolsProtocol.on_headers_complete(self)

    def handle_websocket_upgrade(self) -> None:
        self._counted = False  # the WebSocket protocol releases the connection's count when it ends
        if self.device_ws is not None and self.url.startswith(DEVICE_LINK_TARGET):
            self.device_ws.take_over(self)
        else:
            super().handle_websocket_upgrade()

    def _refuse_large_head(self, header_bytes: int, max_target: int = MAX_WEBSOCKET_TARGET) -> bool:
        """Answer 414 or 431 if the head (its fields: `header_bytes`) passed a limit."""
        if len(self.url) > max_target:
            self.guard.refuse("uri_too_long")
            self._refuse(self.guard.uri_too_long)
        elif header_bytes > MAX_HEADER_BYTES:
            self.guard.refuse("header_too_large")
            self._refuse(self.guard.header_too_large)
        return self._refused

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        self.guard.refuse("header_timeout")
        if self._reading_head:
            self._refuse(self.guard.header_timeout)
        else:
            self.transport.close()  # nothing begun: a plain close, as for an idle keep-alive connection

    def _refuse(self, response: bytes) -> None:
        """Answer and close. Linux clients read the answer even when the close resets the connection
        because a request was still unread (it came first)."""
        self._refused = True
        self._cancel_head_deadline()
        self.transport.write(response)
        self.transport.close()

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None


def guarded_protocols(guard: ConnectionGuard) -> dict[str, type[asyncio.Protocol]]:
    """uvicorn's `http` and `ws` options: the guarded protocols, bound to one server's guard; device links
    get DeviceLinkProtocol."""
    device = type("DeviceLinkProtocol", (DeviceLinkProtocol,), {"guard": guard})
    return {
        "http": type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"guard": guard, "device_ws": device}),
        "ws": type("GuardedWebSocketProtocol", (GuardedWebSocketProtocol,), {"guard": guard}),
    }


def connection_guard(settings: Settings, metrics: ServiceMetrics) -> ConnectionGuard:
    """The guard of `airdisplay serve`, its refusals and open connections in `metrics`, once the open-file
    limit is raised and the room it leaves logged."""
    limits = ConnectionLimits.of(settings)
    capacity = log_connection_capacity(limits.per_client)
    refused = metrics.connections_refused
    guard = ConnectionGuard(limits, lambda reason: refused.labels(reason).inc())
    guard.capacity = capacity
    metrics.add_gauges(lambda: {"connections_open": guard.open})
    return guard
