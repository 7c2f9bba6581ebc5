"""Banner actors on Dapr: this replica hosts some of them (the SDK's ActorRuntime behind daprd) and calls
any of them through its sidecar; events travel over Dapr pub/sub; the fleet listing comes from Redis.

Ports and variables (docs in deploy/dapr/README.md): the app listens on `--port` (daprd's `--app-port`);
daprd's HTTP API on DAPR_HTTP_PORT (default 3500). DAPR_API_TOKEN is sent to daprd; APP_API_TOKEN, when
set, is required from daprd on the routes it calls (/actors, /dapr, /events).

Every call to daprd, the SDK's actor calls (state saves, reminders) included, goes through one `Sidecar`
at `dapr_url` (_sidecar.py). The SDK's settings, which it fills from DAPR_HTTP_PORT, are also pointed at
`dapr_url`, so any SDK code that reads them talks to the same daprd whatever the environment says.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dapr.actor.runtime.config import ActorRuntimeConfig
from dapr.actor.runtime.runtime import ActorRuntime
from dapr.clients.base import DaprActorClientBase
from dapr.conf import settings as sdk_settings
from dapr.ext.fastapi import DaprActor, DaprApp
from fastapi import Body, FastAPI
from fastapi.responses import JSONResponse
from opentelemetry.trace import SpanKind
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from ...actors import RuntimeStats
from ...config import Settings
from ...domain import (
    Banner,
    BannerRules,
    BookingQueue,
    BookOutcome,
    HistoryEntry,
    HistoryPage,
    SubmitOutcome,
    read_fleet_cursor,
)
from ...events import change_from_json
from .._retention import PRUNE_SECONDS, HistoryRetention
from ..base import BannerRuntime, RuntimeEndpoints, StorageUnavailable, banner_call
from ..behaviour import BannerBehaviour, Registration
from ._actor import DAPR_ACTOR_TYPE, BannerActor
from ._directory import RedisDirectory
from ._events import DaprEventBus
from ._holds import RedisHolds
from ._preflight import SIDECAR_WAIT_SECONDS
from ._serializer import PlainJSONSerializer
from ._sidecar import Sidecar, SidecarActorClient, SidecarUnreachable
from ._sweep import ExpirySweep
from ._wire import ActorCallFailed, book_outcome, unwrap

if TYPE_CHECKING:
    from pydantic import SecretStr


log = logging.getLogger("airdisplay.dapr")

#: daprd's default HTTP port, and the names the components in deploy/dapr/components use.
#: Where the routes daprd calls live: the edge hands every path under them to this runtime's own app
#: (`endpoints`), which refuses them without APP_API_TOKEN when it is set.
DAPR_FACING_PREFIXES = ("/actors/", "/dapr/", "/events/")
#: The SDK keeps every active actor object in the app's memory until daprd deactivates it; with Dapr's
#: default idle timeout (1 h) that is every banner touched in the last hour. A minute keeps a banner in
#: a conversation warm and lets a wave of one-off submits leave memory soon after.
ACTOR_IDLE_TIMEOUT = timedelta(minutes=1)
ACTOR_SCAN_INTERVAL = timedelta(seconds=10)


class DaprRuntime(BannerRuntime):
    """The BannerRuntime for replicas behind daprd sidecars."""

    name = "dapr"

    def __init__(
        self,
        rules: BannerRules,
        *,
        dapr_url: str,
        redis_url: str,
        pubsub: str = Settings.default("dapr_pubsub"),
        topic: str = Settings.default("dapr_topic"),
        dapr_api_token: str | None = None,
        app_api_token: str | None = None,
        actor_client: DaprActorClientBase | None = None,
        history_days: float = 0.0,
    ) -> None:
        self.rules = rules
        self.dapr_url = dapr_url.rstrip("/")
        self.sidecar = Sidecar(self.dapr_url, dapr_api_token)
        self.event_bus: DaprEventBus = DaprEventBus(self.sidecar, pubsub, topic)
        self.directory = RedisDirectory(redis_url)
        self.app_api_token = app_api_token
        self._headers = {"dapr-api-token": dapr_api_token} if dapr_api_token else {}
        self._actor_client = actor_client
        self._serializer = PlainJSONSerializer()
        self._running = False
        self._endpoints: RuntimeEndpoints | None = None
        self.sweep = ExpirySweep(self.directory, self._expire)
        #: History older than `history_days` goes (0: kept for good); one replica prunes a round.
        self._holder = uuid.uuid4().hex
        self.retention = HistoryRetention(
            self.directory.history.prune, history_days, round_lock=self._prune_round
        )
        #: Turns of the actors this replica hosts, and their state saves.
        self.stats = RuntimeStats()

    @classmethod
    def from_settings(cls, settings: Settings) -> DaprRuntime:
        def secret(value: SecretStr | None) -> str | None:
            return value.get_secret_value() if value is not None else None

        return cls(
            settings.rules,
            dapr_url=settings.dapr_url,
            redis_url=settings.redis_url,
            pubsub=settings.dapr_pubsub,
            topic=settings.dapr_topic,
            dapr_api_token=secret(settings.dapr_api_token),
            app_api_token=secret(settings.app_api_token),
            history_days=settings.history_days,
        )

    # -- lifecycle ---------------------------------------------------------------------------------

    def endpoints(self) -> RuntimeEndpoints:
        """The routes daprd calls (actor hosting, the subscription), behind the app-token guard if set."""
        if self._endpoints is None:
            self._endpoints = RuntimeEndpoints(self._daprd_facing_app(), DAPR_FACING_PREFIXES)
        return self._endpoints

    def _daprd_facing_app(self) -> ASGIApp:
        """An app of its own for them: the SDK's DaprActor and DaprApp add their routes to a FastAPI app."""
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        DaprActor(app)
        dapr_app = DaprApp(app)
        bus = self.event_bus

        @dapr_app.subscribe(pubsub=bus.pubsub, topic=bus.topic)
        async def banner_changes(event: dict[str, Any] = Body(...)) -> dict[str, str]:  # noqa: B008
            """Banner events from Dapr pub/sub, fanned out to this replica's streams and devices."""
            try:
                change = change_from_json(event.get("data"))  # type: ignore[arg-type]
            except ValueError as exc:
                log.warning("dropping a malformed banner event: %s", exc)
                return {"status": "DROP"}
            bus.deliver(change)
            return {"status": "SUCCESS"}

        if self.app_api_token:
            return AppTokenGuard(app, token=self.app_api_token)
        return app

    async def start(self) -> None:
        await self.event_bus.start()
        try:
            await self._start_actors()
        except BaseException:
            await self.event_bus.stop()
            raise

    async def _start_actors(self) -> None:
        # Assigned on the instance, these win over the DAPR_* environment (dapr.conf.Settings).
        vars(sdk_settings).update(
            DAPR_HTTP_ENDPOINT=self.dapr_url,
            DAPR_API_TOKEN=self._headers.get("dapr-api-token"),
        )
        try:
            await self.sidecar.wait_until_up(SIDECAR_WAIT_SECONDS)
        except SidecarUnreachable as exc:
            raise ActorCallFailed(
                f"daprd at {self.dapr_url} {exc} after {SIDECAR_WAIT_SECONDS:g} s"
            ) from None
        client = self._actor_client or SidecarActorClient(self.sidecar)
        ActorRuntime.set_actor_config(
            ActorRuntimeConfig(actor_idle_timeout=ACTOR_IDLE_TIMEOUT, actor_scan_interval=ACTOR_SCAN_INTERVAL)
        )
        await ActorRuntime.register_actor(
            BannerActor,
            message_serializer=self._serializer,
            state_serializer=self._serializer,
            actor_factory=lambda ctx, actor_id: BannerActor(
                ctx, actor_id, self.rules, self.event_bus, self.directory, self.stats
            ),
            actor_client=client,
        )
        await self.directory.ping()
        self.sweep.start()
        self.retention.start()
        self._running = True

    def hold_ledger(self) -> RedisHolds:
        """The booking quota's holds, in the fleet's Redis: every replica counts the same."""
        return self.directory.holds

    async def shared_secret(self, name: str, size: int) -> bytes:
        """Kept in the fleet's Redis beside the directory, so that every replica has the same."""
        try:
            return await self.directory.shared_secret(name, size)
        except RedisError as exc:
            raise StorageUnavailable(f"the fleet's shared secrets (Redis) are unavailable: {exc}") from None

    async def stop(self) -> None:
        self._running = False
        await self.retention.stop()
        await self.sweep.stop()
        await self.directory.close()
        await self.event_bus.stop()  # last: its flush is the last call to daprd; it closes the sidecar's pool

    def is_ready(self) -> bool:
        return self._running

    def collectors(self) -> list[Collector]:
        return [self.stats.registry]

    # -- calls through daprd -----------------------------------------------------------------------

    async def _call(
        self, banner_id: str, turn: Callable[..., Awaitable[object]], data: dict[str, Any] | None = None
    ) -> Any:
        """Run the BannerBehaviour turn `turn` on the banner's actor through daprd; its wire name is the
        turn's name (_actor.py), so both runtimes call one set of operations."""
        if not self._running:
            raise ActorCallFailed("the Dapr runtime is not started")
        method = turn.__name__
        return await banner_call(method, banner_id, self._invoke(banner_id, method, data), SpanKind.CLIENT)

    async def _invoke(self, banner_id: str, method: str, data: dict[str, Any] | None) -> Any:
        path = f"/v1.0/actors/{DAPR_ACTOR_TYPE}/{banner_id}/method/{method}"
        try:
            status, body = await self.sidecar.request(
                "PUT", path, self._serializer.serialize(data or {}), invocation=True
            )
        except SidecarUnreachable as exc:
            raise ActorCallFailed(f"daprd cannot be reached: {exc}") from None
        if status != 200:
            raise ActorCallFailed(f"daprd answered {status} for {method}: {body[:300]!r}")
        return unwrap(self._serializer.deserialize(body))

    async def create_banner(self, banner_id: str, name: str) -> Registration:
        value = await self._call(banner_id, BannerBehaviour.register, {"name": name})
        return Registration(Banner.model_validate(value["banner"]), value["device_token"])

    async def get_banner(self, banner_id: str) -> Banner:
        return Banner.model_validate(await self._call(banner_id, BannerBehaviour.get))

    async def delete_banner(self, banner_id: str) -> None:
        await self._call(banner_id, BannerBehaviour.delete)

    async def submit_message(
        self,
        banner_id: str,
        text: str,
        *,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
        by: str | None = None,
    ) -> SubmitOutcome:
        value = await self._call(
            banner_id,
            BannerBehaviour.submit,
            {
                "text": text,
                "idempotency_key": idempotency_key,
                "expected_version": expected_version,
                "by": by,
            },
        )
        return SubmitOutcome(Banner.model_validate(value["banner"]), value["replayed"])

    async def clear_message(self, banner_id: str) -> Banner:
        return Banner.model_validate(await self._call(banner_id, BannerBehaviour.clear))

    async def book(
        self, banner_id: str, text: str, *, by: str, idempotency_key: str | None = None
    ) -> BookOutcome:
        value = await self._call(
            banner_id, BannerBehaviour.book, {"text": text, "by": by, "idempotency_key": idempotency_key}
        )
        return book_outcome(value)

    async def cancel_booking(self, banner_id: str, booking_id: str, token: str | None) -> Banner:
        return Banner.model_validate(
            await self._call(
                banner_id, BannerBehaviour.cancel_booking, {"booking_id": booking_id, "token": token}
            )
        )

    async def bookings(self, banner_id: str) -> BookingQueue:
        return BookingQueue.model_validate(await self._call(banner_id, BannerBehaviour.bookings))

    async def rotate_device_token(self, banner_id: str) -> str:
        return str(await self._call(banner_id, BannerBehaviour.rotate_device_token))

    async def authenticate_device(self, banner_id: str, token: str) -> Banner:
        return Banner.model_validate(
            await self._call(banner_id, BannerBehaviour.check_device_token, {"token": token})
        )

    async def device_online(self, banner_id: str) -> Banner:
        return Banner.model_validate(await self._call(banner_id, BannerBehaviour.device_online))

    async def device_offline(self, banner_id: str) -> Banner:
        return Banner.model_validate(await self._call(banner_id, BannerBehaviour.device_offline))

    async def device_ack(self, banner_id: str, display_version: int) -> Banner:
        return Banner.model_validate(
            await self._call(banner_id, BannerBehaviour.device_ack, {"version": display_version})
        )

    async def _prune_round(self) -> bool:
        """Whether this replica prunes this round: the one that takes the lock (for most of the round)."""
        return await self.directory.try_lock("history-prune", self._holder, PRUNE_SECONDS * 0.9)

    async def _showing(self, banner_id: str) -> HistoryEntry | None:
        found = await self._call(banner_id, BannerBehaviour.showing)
        return None if found is None else HistoryEntry.model_validate(found)

    async def _recorded(self, banner_id: str, cursor: tuple[float, str] | None, limit: int) -> HistoryPage:
        try:
            return await self.directory.history.of(banner_id, cursor, limit)
        except RedisError as exc:
            raise StorageUnavailable(f"the fleet history (Redis) is unavailable: {exc}") from None

    async def fleet_history(
        self, *, since: datetime, until: datetime, after: str | None, limit: int
    ) -> HistoryPage:
        cursor = None if after is None else read_fleet_cursor(after)
        try:
            return await self.directory.history.between(since.timestamp(), until.timestamp(), cursor, limit)
        except RedisError as exc:
            raise StorageUnavailable(f"the fleet history (Redis) is unavailable: {exc}") from None

    async def list_banners(self, *, after: str | None, limit: int, search: str | None = None) -> list[Banner]:
        try:
            return await self.directory.page(after, limit, search)
        except RedisError as exc:  # storage trouble: a 503 with Retry-After at the edge
            raise StorageUnavailable(f"the fleet directory (Redis) is unavailable: {exc}") from None

    async def _expire(self, banner_id: str, message_id: str) -> None:
        await self._call(banner_id, BannerBehaviour.expire, {"message_id": message_id})


class AppTokenGuard:
    """Refuse daprd-facing routes unless the request carries `dapr-api-token: <APP_API_TOKEN>`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(DAPR_FACING_PREFIXES):
            sent = dict(scope["headers"]).get(b"dapr-api-token", b"")
            if not hmac.compare_digest(sent, self.token):
                response = JSONResponse({"detail": "missing or wrong dapr-api-token"}, status_code=401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
