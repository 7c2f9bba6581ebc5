"""One HTTP connection pool to this replica's daprd, for every call the app makes to it.

Every submit makes five calls to daprd: the actor invocation, a state read, the reminder, the
transactional save, the publish. The SDK's own actor client opens a new aiohttp session (a new
connection) per call, and httpx (with httpcore) spent most of the app's CPU in its pool bookkeeping: in
py-spy profiles of bench/dapr_compare.py's submit workload the app used ~30 ms of CPU per submit, most of
it in those two clients. So all calls share one aiohttp session with keep-alive connections.

Calls into actors (invocations) have a pool of their own. An invocation holds its connection until the
actor's turn has run, and a turn makes calls of its own (state, reminders); with one pool, more
invocations waiting on one busy actor than the pool holds left that actor's turn no connection for its
state read, and every call waited for the 30 s timeout (200 bookings at once on one banner did).

`SidecarActorClient` answers the SDK exactly as its own client would: the response body, or
DaprInternalError for a status outside 2xx (the SDK's state manager clears its cache on that error).
"""

from __future__ import annotations

import asyncio

import aiohttp
from dapr.clients.base import DaprActorClientBase
from dapr.clients.exceptions import DaprInternalError

from ... import tracing

#: daprd answers in milliseconds; a call stuck this long means daprd or Redis is gone.
CALL_TIMEOUT = 30.0
#: Connections kept open to daprd, in each of the two pools (invocations, and the calls turns make): enough
#: for the turns and requests in flight at once on one replica.
POOL_SIZE = 128


class SidecarUnreachable(ConnectionError):
    """Raised when daprd cannot be reached at all (refused, reset, timed out)."""


class Sidecar:
    """Calls to daprd's HTTP API over a pool of kept-alive connections.

    The pool opens at the first call (inside the event loop) and closes with `close()`, once, when the last
    user stops (the event bus: the app stops it after the runtime, and it flushes events at the end).
    """

    def __init__(self, dapr_url: str, api_token: str | None = None) -> None:
        self.url = dapr_url.rstrip("/")
        self._headers = {"dapr-api-token": api_token} if api_token else {}
        #: The pools: [0] for calls into actors (`invocation`), [1] for the rest.
        self._sessions: list[aiohttp.ClientSession | None] = [None, None]
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        for session in self._sessions:
            if session is not None:
                await session.close()

    def _session(self, invocation: bool) -> aiohttp.ClientSession:
        index = 0 if invocation else 1
        session = self._sessions[index]
        if session is None:
            session = self._sessions[index] = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT),
                connector=aiohttp.TCPConnector(limit=POOL_SIZE),
            )
        return session

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        limit: float | None = None,
        *,
        invocation: bool = False,
    ) -> tuple[int, bytes]:
        """Status and body of `method path` (path from /v1.0 on); SidecarUnreachable when it got none.
        `invocation`: a call into an actor, which waits for its turn (a pool of its own)."""
        if self._closed:
            raise SidecarUnreachable(f"the connection pool to daprd at {self.url} is closed")
        session = self._session(invocation)
        headers = {"Content-Type": "application/json"} if body is not None else None
        if tracing.enabled:  # the trace goes on through daprd (actor calls, publishes): docs/observability.md
            headers = dict(headers or {})
            tracing.inject_into(headers)
        try:
            async with session.request(
                method,
                self.url + path,
                data=body,
                headers=headers,
                # Always a timeout: aiohttp reads `timeout=None` as none at all, not as the session's.
                timeout=aiohttp.ClientTimeout(total=limit or CALL_TIMEOUT),
            ) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SidecarUnreachable(f"daprd at {self.url}: {type(exc).__name__}: {exc}") from None

    async def wait_until_up(self, seconds: float) -> None:
        """Until daprd's outbound side answers (it does within a second of starting, app or not);
        SidecarUnreachable saying what it last answered after `seconds`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            try:
                status, _ = await self.request("GET", "/v1.0/healthz/outbound", limit=1.0)
                if status < 300:
                    return
                problem = f"answered {status}"
            except SidecarUnreachable as exc:
                problem = f"does not answer ({str(exc).rsplit(': ', 2)[-2]})"
            if loop.time() >= deadline:
                raise SidecarUnreachable(problem)
            await asyncio.sleep(0.1)


class SidecarActorClient(DaprActorClientBase):
    """The SDK's actor client (state, reminders, timers, invocations) on the shared `Sidecar`."""

    def __init__(self, sidecar: Sidecar) -> None:
        self._sidecar = sidecar

    async def _send(
        self, method: str, path: str, data: bytes | None = None, *, invocation: bool = False
    ) -> bytes:
        try:
            status, body = await self._sidecar.request(
                method, "/v1.0/actors" + path, data, invocation=invocation
            )
        except SidecarUnreachable as exc:
            raise DaprInternalError(str(exc)) from None
        if not 200 <= status < 300:
            raise DaprInternalError(f"daprd answered {status}: {body[:300]!r}")
        return body

    async def invoke_method(
        self, actor_type: str, actor_id: str, method: str, data: bytes | None = None
    ) -> bytes:
        return await self._send("POST", f"/{actor_type}/{actor_id}/method/{method}", data, invocation=True)

    async def save_state_transactionally(self, actor_type: str, actor_id: str, data: bytes) -> None:
        await self._send("PUT", f"/{actor_type}/{actor_id}/state", data)

    async def get_state(self, actor_type: str, actor_id: str, name: str) -> bytes:
        return await self._send("GET", f"/{actor_type}/{actor_id}/state/{name}")

    async def register_reminder(self, actor_type: str, actor_id: str, name: str, data: bytes) -> None:
        await self._send("PUT", f"/{actor_type}/{actor_id}/reminders/{name}", data)

    async def unregister_reminder(self, actor_type: str, actor_id: str, name: str) -> None:
        await self._send("DELETE", f"/{actor_type}/{actor_id}/reminders/{name}")

    async def register_timer(self, actor_type: str, actor_id: str, name: str, data: bytes) -> None:
        await self._send("PUT", f"/{actor_type}/{actor_id}/timers/{name}", data)

    async def unregister_timer(self, actor_type: str, actor_id: str, name: str) -> None:
        await self._send("DELETE", f"/{actor_type}/{actor_id}/timers/{name}")
