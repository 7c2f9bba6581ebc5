"""The edge's access control: credentials to roles, 401/403/429 problems, stream quotas per client.

Rules (docs/security.md):
- Operator routes (register, delete, clear, rotate device tokens, metrics) need an operator key. Only a
  server that listens on loopback, trusts no proxy and has no operator key (nor ever had one in its data
  directory) leaves them open, for trying it out on one's own machine (access/_keyring.py); such a server
  cannot be started on another address.
- Submitting is open to anyone by default (a public banner app), or needs a submitter or operator key
  when the operator sets `submit_access="key"`. Either way each client gets a token bucket; operator
  keys are exempt, so automation the operator runs is never throttled.
- A presented key that is not valid is refused with 401 even on an open route: a client with a revoked
  key should learn it, not be silently treated as anonymous.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from ..access import (
    Blocklist,
    BookingQuota,
    ConnectionLimiter,
    KeyRing,
    Principal,
    RateLimiter,
    Role,
    client_key,
    operator_routes_open,
    retry_after_seconds,
)
from ..config import Settings
from ..domain import TextNotAllowed
from ._metrics import ServiceMetrics
from .problems import ProblemError, problem

#: The key of client address hashes: a file of the data directory, 32 random bytes.
CLIENT_HASH_KEY_FILE = "client-hash.key"
#: Its name where a runtime's processes share it instead (`BannerRuntime.shared_secret`).
CLIENT_HASH_KEY_NAME = "client-hash"
CLIENT_HASH_KEY_BYTES = 32
#: 64 bits of the hash: tells clients apart, and is no use for guessing an address offline without the key.
CLIENT_HASH_HEX = 16
#: Client hashes remembered (`AccessControl.who`): ~200 bytes each, so at most ~2 MB.
CLIENT_HASHES_KEPT = 10_000
#: A client at its booking quota may try again after this: one of its bookings may have shown by then.
BOOKING_RETRY_AFTER = 60
#: A refused stream may try again after this; streams of the same client end as tabs close.
STREAM_RETRY_AFTER = 5
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="airdisplay"'}


def client_hash_key(data_dir: Path) -> bytes:
    """The secret that keys the hashes of client addresses: made once per data directory, so a client's
    hash is the same after a restart (and no one without the file can tell an address from its hash)."""
    path = data_dir / CLIENT_HASH_KEY_FILE
    try:
        key = path.read_bytes()
        if len(key) == CLIENT_HASH_KEY_BYTES:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(CLIENT_HASH_KEY_BYTES)
    data_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        out.write(key)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    return key


def client_address(connection: HTTPConnection) -> str:
    """The client's address as the server sees it (after trusted proxy headers, if configured)."""
    client = connection.client
    return client.host if client is not None else "unknown"


class AccessControl:
    """Everything that decides whether a request may go ahead, built once per app from its settings."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        key = settings.operator_key.get_secret_value() if settings.operator_key else None
        self.keys = KeyRing(settings.data_dir, key)
        self.loopback = settings.is_loopback
        #: Behind a trusted proxy every request arrives from loopback, wherever its client is.
        self.proxied = settings.forwarded_allow_ips is not None
        self.submit_needs_key = settings.submit_access == "key"
        self.submit_limit = (
            RateLimiter(
                settings.submit_rate, settings.submit_burst, ipv6_prefix=settings.rate_limit_ipv6_prefix
            )
            if settings.submit_rate > 0
            else None
        )
        self.streams = ConnectionLimiter(
            settings.max_streams_per_client, ipv6_prefix=settings.rate_limit_ipv6_prefix
        )
        self.blocklist = Blocklist(settings.blocklist)
        self.metrics = metrics
        self._client_key = client_hash_key(settings.data_dir)
        #: `who` of recent clients by address (or IPv6 network): the HMAC is ~4 us here, a lookup ~0.1 us.
        self._client_hashes: dict[str, str] = {}
        self._ipv6_prefix = settings.rate_limit_ipv6_prefix
        self.bookings = BookingQuota(settings.bookings_per_client, settings.message_seconds)

    def use_client_key(self, key: bytes) -> None:
        """Hash client addresses under `key` from now on: the one a fleet's replicas share
        (`BannerRuntime.shared_secret`), so that a client has the same hash whichever replica it reaches."""
        self._client_key = key
        self._client_hashes.clear()

    @property
    def operator_open(self) -> bool:
        """True in the try-it-out mode: loopback, no trusted proxy, no operator key now or before."""
        return operator_routes_open(self.keys, loopback=self.loopback, proxied=self.proxied)

    def principal(self, authorization: str | None) -> Principal | None:
        """The caller's key, None without one; 401 for a key that is not valid."""
        if authorization is None:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            self._denied()
            raise ProblemError(
                401, "Unauthorized", "send a key as 'Authorization: Bearer <key>'", "unauthorized", _CHALLENGE
            )
        found = self.keys.verify(token)
        if found is None:
            self._denied()
            raise ProblemError(
                401, "Unauthorized", "the key is not valid (unknown or revoked)", "unauthorized", _CHALLENGE
            )
        return found

    def require(self, role: Role, authorization: str | None) -> Principal | None:
        """The caller's principal if it may act as `role`; 401 without a key, 403 with too weak a key."""
        principal = self.principal(authorization)
        if principal is None:
            if role is Role.OPERATOR and self.operator_open:
                return None
            if role is Role.SUBMITTER and not self.submit_needs_key:
                return None
            self._denied()
            raise ProblemError(
                401,
                "Unauthorized",
                f"this needs {'an operator' if role is Role.OPERATOR else 'a submitter'} key, sent as "
                "'Authorization: Bearer <key>'",
                "unauthorized",
                _CHALLENGE,
            )
        if not principal.role.allows(role):
            self._denied()
            raise ProblemError(403, "Forbidden", f"a {principal.role.value} key may not do this", "forbidden")
        return principal

    def admit_submit(self, connection: HTTPConnection, authorization: str | None) -> None:
        """Check the credential and the client's submit rate; 401/403/429 as problems."""
        principal = self.require(Role.SUBMITTER, authorization)
        if self.submit_limit is None or (principal is not None and principal.role is Role.OPERATOR):
            return
        client = f"key:{principal.key_id}" if principal is not None else client_address(connection)
        decision = self.submit_limit.hit(client)
        if not decision.allowed:
            self.metrics.rate_limited.inc()
            seconds = retry_after_seconds(decision)
            raise ProblemError(
                429,
                "Too many messages",
                f"this client sends messages faster than the fleet allows; try again in {seconds} s",
                "rate-limited",
                {"Retry-After": str(seconds)},
            )

    def open_stream(self, connection: HTTPConnection) -> Callable[[], None] | None:
        """Count a new stream for the client: its release function, or None at the client's limit."""
        client = client_address(connection)
        if not self.streams.acquire(client):
            self.metrics.streams_refused.inc()
            return None
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.streams.release(client)

        return release

    async def accept_stream(self, websocket: WebSocket) -> Callable[[], None] | None:
        """Accept a WebSocket stream within the client's quota: its release function, or None when the
        handshake was refused with 401 (a key that is not valid) or 429 (then the route just returns)."""
        try:
            self.principal(websocket.headers.get("authorization"))
        except ProblemError as refused:
            await websocket.send_denial_response(refused.response())
            return None
        release = self.open_stream(websocket)
        if release is None:
            await websocket.send_denial_response(self.too_many_streams())
            return None
        try:
            await websocket.accept()
        except BaseException:
            release()
            raise
        return release

    def too_many_streams(self) -> JSONResponse:
        """The 429 answer to a stream the client may not open."""
        limit = self.streams.per_client
        return problem(
            429,
            "Too many streams",
            f"a client may keep at most {limit} streams open; close one first",
            kind="too-many-streams",
            headers={"Retry-After": str(STREAM_RETRY_AFTER)},
        )

    def is_operator(self, authorization: str | None) -> bool:
        """True for an operator key, or no key where operator routes are open; 401 for a bad key."""
        principal = self.principal(authorization)
        if principal is None:
            return self.operator_open
        return principal.role is Role.OPERATOR

    def who(self, connection: HTTPConnection, authorization: str | None) -> str:
        """Who makes a request, for what it leaves behind (a booking): `key:<id>` for a key, else a keyed
        hash of the client's address or IPv6 network (`client:<hex>`), never the address itself."""
        if authorization is not None:
            principal = self.principal(authorization)
            if principal is not None:
                return f"key:{principal.key_id}"
        # Kept by the address as the server sees it (`client_address`, inlined: every open submit asks).
        client = connection.client
        address = client.host if client is not None else "unknown"
        known = self._client_hashes.get(address)
        if known is None:
            counted = client_key(address, self._ipv6_prefix)
            digest = hmac.new(self._client_key, counted.encode(), hashlib.sha256)
            known = f"client:{digest.hexdigest()[:CLIENT_HASH_HEX]}"
            if len(self._client_hashes) >= CLIENT_HASHES_KEPT:  # bounded: forget them all, recompute
                self._client_hashes.clear()
            self._client_hashes[address] = known
        return known

    async def reserve_booking(self, who: str, authorization: str | None) -> str | None:
        """Take a place in `who`'s booking quota (429 at the limit): the hold to keep or give back
        (`bookings`), None when none was needed (no quota, or an operator key)."""
        if not self.bookings.per_client:
            return None
        principal = self.principal(authorization)
        if principal is not None and principal.role is Role.OPERATOR:
            return None
        hold = await self.bookings.reserve(who)
        if hold is None:
            limit = self.bookings.per_client
            raise ProblemError(
                429,
                "Too many bookings",
                f"a client may hold at most {limit} waiting bookings across the fleet; cancel one or wait "
                "until one has shown",
                "too-many-bookings",
                {"Retry-After": str(BOOKING_RETRY_AFTER)},
            )
        return hold

    def check_text(self, text: str) -> None:
        """Refuse text the fleet's blocklist names (TextNotAllowed, a 422)."""
        try:
            self.blocklist.policy.check(text)
        except TextNotAllowed:
            self.metrics.refused_content.inc()
            raise

    def _denied(self) -> None:
        self.metrics.auth_failures.inc()
