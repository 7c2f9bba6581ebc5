"""A stand-in for daprd, for fast tests of the app's side of the Dapr contract (a real daprd takes a
second to start and hides what the app sent it). The real thing runs in
tests/runtimes/dapr/test_real_cluster.py and in the behaviour suite's dapr-real runtime; only they show
placement, the Scheduler's timing and retries, the Redis state store and pub/sub, failover and the SDK's
real HTTP client.

It plays daprd's two sides, as the real sidecar does:
- towards the SDK inside the app, an in-process `DaprActorClientBase` (the SDK's own hook for its actor
  client): a state store that applies the SDK's transactional saves, and a reminder scheduler;
- towards the app over real HTTP on a free port, daprd's API the app calls (`/v1.0/actors/...` invocations,
  `/v1.0/publish/...`), which it forwards to the app's own routes exactly as daprd does
  (`PUT /actors/<type>/<id>/method/<name>`, `PUT .../method/remind/<name>`, the pub/sub delivery route),
  holding a per-actor turn lock as daprd does.
Every call the app makes is recorded for the tests to check.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from dapr.clients.base import DaprActorClientBase
from dapr.serializers.util import convert_from_dapr_duration
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import eventually


@dataclass
class RegisteredReminder:
    actor_type: str
    actor_id: str
    name: str
    body: dict[str, Any]
    task: asyncio.Task[None] | None = None


@dataclass
class DaprdDouble:
    """The fake sidecar; `app_url` is set once the app under test listens."""

    app_url: str = ""
    #: How often daprd delivers each reminder firing (daprd: at least once; set >1 to test idempotency).
    reminder_deliveries: int = 1
    state: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)
    reminders: dict[tuple[str, str, str], RegisteredReminder] = field(default_factory=dict)
    reminder_log: list[dict[str, Any]] = field(default_factory=list)
    published: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._server: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._http = httpx.AsyncClient(timeout=30)
        self.actor_client = _ActorClient(self)
        self.subscription_route: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        routes = [
            Route(
                "/v1.0/actors/{actor_type}/{actor_id}/method/{method}", self._invoke, methods=["PUT", "POST"]
            ),
            Route("/v1.0/publish/{pubsub}/{topic}", self._publish, methods=["POST"]),
            Route("/v1.0/healthz/outbound", lambda _request: Response(status_code=204)),
        ]
        self._server = uvicorn.Server(uvicorn.Config(Starlette(routes=routes), log_level="warning"))
        self._tasks.append(asyncio.create_task(self._server.serve(sockets=[sock])))
        self._tasks.append(asyncio.create_task(self._deliver_events()))
        await eventually(lambda: self._server is not None and self._server.started, what="the daprd double")

    async def connect_app(self, app_url: str) -> None:
        """What daprd does when the app is up: read its actor config and its subscriptions."""
        self.app_url = app_url
        config = (await self._http.get(f"{app_url}/dapr/config")).json()
        self.calls.append("GET /dapr/config")
        assert "BannerActor" in config["entities"], config
        subscriptions = (await self._http.get(f"{app_url}/dapr/subscribe")).json()
        self.calls.append("GET /dapr/subscribe")
        self.subscription_route = subscriptions[0]["route"]

    async def stop(self) -> None:
        for reminder in self.reminders.values():
            if reminder.task is not None:
                reminder.task.cancel()
        serving, delivering = self._tasks
        delivering.cancel()
        if self._server is not None:
            self._server.should_exit = True
        await asyncio.gather(serving, delivering, return_exceptions=True)
        await self._http.aclose()

    def lock(self, actor_type: str, actor_id: str) -> asyncio.Lock:
        return self._locks.setdefault((actor_type, actor_id), asyncio.Lock())

    # -- daprd's API, as the app sees it -----------------------------------------------------------

    async def _invoke(self, request: Request) -> Response:
        p = request.path_params
        self.calls.append(
            f"{request.method} /v1.0/actors/{p['actor_type']}/{p['actor_id']}/method/{p['method']}"
        )
        body = await request.body()
        async with self.lock(p["actor_type"], p["actor_id"]):
            reply = await self._http.put(
                f"{self.app_url}/actors/{p['actor_type']}/{p['actor_id']}/method/{p['method']}", content=body
            )
        return Response(reply.content, status_code=reply.status_code, media_type="application/json")

    async def _publish(self, request: Request) -> Response:
        p = request.path_params
        data = json.loads(await request.body())
        event = {
            "id": str(uuid.uuid4()),
            "specversion": "1.0",
            "source": "airdisplay",
            "type": "com.dapr.event.sent",
            "datacontenttype": "application/json",
            "pubsubname": p["pubsub"],
            "topic": p["topic"],
            "data": data,
        }
        self.published.append(event)
        self._outbox.put_nowait(event)
        return Response(status_code=204)

    async def _deliver_events(self) -> None:
        """Deliver published events to the app's subscription route, in order (like Redis, concurrency 1)."""
        while True:
            event = await self._outbox.get()
            assert self.subscription_route is not None, "the app's subscriptions were never read"
            await self._http.post(
                f"{self.app_url}{self.subscription_route}",
                content=json.dumps(event),
                headers={"Content-Type": "application/cloudevents+json"},
            )

    # -- reminders ---------------------------------------------------------------------------------

    def schedule(self, reminder: RegisteredReminder) -> None:
        key = (reminder.actor_type, reminder.actor_id, reminder.name)
        old = self.reminders.get(key)
        if old is not None and old.task is not None:
            old.task.cancel()
        self.reminders[key] = reminder
        reminder.task = asyncio.get_running_loop().create_task(self._fire(reminder))

    def cancel(self, actor_type: str, actor_id: str, name: str) -> None:
        reminder = self.reminders.pop((actor_type, actor_id, name), None)
        if reminder is not None and reminder.task is not None:
            reminder.task.cancel()

    async def _fire(self, reminder: RegisteredReminder) -> None:
        await asyncio.sleep(convert_from_dapr_duration(reminder.body["dueTime"]).total_seconds())
        period = reminder.body.get("period")
        while True:
            # daprd's scheduler sends empty dueTime/period and our registered data back.
            body = json.dumps({"data": reminder.body["data"], "dueTime": "", "period": ""})
            for _ in range(self.reminder_deliveries):
                async with self.lock(reminder.actor_type, reminder.actor_id):
                    self.calls.append(
                        f"PUT /actors/{reminder.actor_type}/{reminder.actor_id}/method/remind/{reminder.name}"
                    )
                    await self._http.put(
                        f"{self.app_url}/actors/{reminder.actor_type}/{reminder.actor_id}/method/remind/{reminder.name}",
                        content=body,
                    )
            if not period:
                key = (reminder.actor_type, reminder.actor_id, reminder.name)
                if self.reminders.get(key) is reminder:
                    del self.reminders[key]  # one-shot: gone once delivered
                return
            await asyncio.sleep(convert_from_dapr_duration(period).total_seconds())


class _ActorClient(DaprActorClientBase):
    """The SDK's actor client hook, backed by the double's store and scheduler."""

    def __init__(self, daprd: DaprdDouble) -> None:
        self.daprd = daprd

    async def invoke_method(
        self, actor_type: str, actor_id: str, method: str, data: bytes | None = None
    ) -> bytes:
        raise NotImplementedError("actor-to-actor calls are not used by AirDisplay")

    async def save_state_transactionally(self, actor_type: str, actor_id: str, data: bytes) -> None:
        store = self.daprd.state.setdefault((actor_type, actor_id), {})
        for op in json.loads(data):
            request = op["request"]
            if op["operation"] == "upsert":
                store[request["key"]] = json.dumps(request.get("value")).encode()
            elif op["operation"] == "delete":
                store.pop(request["key"], None)

    async def get_state(self, actor_type: str, actor_id: str, name: str) -> bytes:
        return self.daprd.state.get((actor_type, actor_id), {}).get(name, b"")

    async def register_reminder(self, actor_type: str, actor_id: str, name: str, data: bytes) -> None:
        body = json.loads(data)
        self.daprd.reminder_log.append({"actor_id": actor_id, "name": name, **body})
        self.daprd.schedule(RegisteredReminder(actor_type, actor_id, name, body))

    async def unregister_reminder(self, actor_type: str, actor_id: str, name: str) -> None:
        self.daprd.cancel(actor_type, actor_id, name)

    async def register_timer(self, actor_type: str, actor_id: str, name: str, data: bytes) -> None:
        raise NotImplementedError("AirDisplay uses no timers")

    async def unregister_timer(self, actor_type: str, actor_id: str, name: str) -> None:
        raise NotImplementedError("AirDisplay uses no timers")


def reminder_data(body: dict[str, Any]) -> bytes:
    return base64.b64decode(body["data"])


@contextlib.asynccontextmanager
async def running_daprd(**kwargs: Any) -> Any:
    daprd = DaprdDouble(**kwargs)
    await daprd.start()
    try:
        yield daprd
    finally:
        await daprd.stop()
