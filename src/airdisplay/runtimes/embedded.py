"""Banner actors on the embedded actor runtime: one process, one SQLite file, no sidecar."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ..actors import (
    DEFAULT_IDLE_TIMEOUT,
    Actor,
    ActorContext,
    ActorHost,
    ReminderBatching,
    ReminderEffect,
    ReminderRecord,
    SqliteStore,
)
from ..actors._store import Durability
from ..domain import Banner, BannerChanged, BannerRules, SubmitOutcome
from ..events import InProcessEventBus
from .base import BannerRuntime
from .behaviour import BANNER_KEY, EXPIRE_REMINDER, BannerBehaviour, Registration

log = logging.getLogger("airdisplay.embedded")

BANNER_ACTOR_TYPE = "banner"
#: Banners are searched by name prefix (GET /api/v1/banners?q=); the store indexes that field.
SEARCH_INDEX = (BANNER_KEY, "name")
DATABASE_FILE = "airdisplay.db"


class BannerActor(BannerBehaviour, Actor):
    """The banner actor hosted by the embedded runtime."""

    def __init__(self, ctx: ActorContext, rules: BannerRules) -> None:
        super().__init__(ctx)
        self.rules = rules


def _expire_in_batch(
    record: ReminderRecord, stored: Mapping[str, bytes], now: float
) -> ReminderEffect | None:
    """The expiry of a banner that is not busy: what `BannerBehaviour.expire` does, without a turn."""
    expired = BannerBehaviour.expire_stored(stored.get(BANNER_KEY), record.data.decode(), now)
    if expired is None:
        return None
    value, event = expired
    return ReminderEffect(state_set=((BANNER_KEY, value),), events=(event,))


#: Expiries of banners that are not busy go in batches: one read and one transaction per batch instead of
#: an activation and a turn each (bench/expiries.py).
EXPIRY_BATCHING = ReminderBatching(frozenset({EXPIRE_REMINDER}), (BANNER_KEY,), _expire_in_batch)


class EmbeddedRuntime(BannerRuntime):
    """Runs banner actors in this process over `<data_dir>/airdisplay.db`."""

    name = "embedded"

    def __init__(
        self,
        data_dir: Path,
        rules: BannerRules,
        *,
        idle_timeout: float | None = None,
        durability: Durability = "full",
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`clock` (seconds since the epoch) drives the actors' time and reminders; tests pass a fake one."""
        self.database = data_dir / DATABASE_FILE
        self.host = ActorHost(
            SqliteStore(self.database, durability=durability),
            event_sink=self._on_events,
            idle_timeout=DEFAULT_IDLE_TIMEOUT if idle_timeout is None else idle_timeout,
            clock=clock,
        )
        self.host.register_actor_type(
            BANNER_ACTOR_TYPE, BannerActor, lambda ctx: BannerActor(ctx, rules), batching=EXPIRY_BATCHING
        )
        self.event_bus = InProcessEventBus()
        self._running = False

    async def start(self) -> None:
        await self.host.start()
        self.host.store.ensure_field_index(*SEARCH_INDEX)
        self._running = True

    async def stop(self) -> None:
        self._running = False
        await self.host.stop()

    def is_ready(self) -> bool:
        return self._running

    def unready_reason(self) -> str | None:
        """Also not ready while the store refuses writes (disk full): reads and streams still work."""
        if not self._running:
            return super().unready_reason()
        return self.host.store.write_refusal

    def gauges(self) -> dict[str, float]:
        return {
            "actors_active": self.host.active_count,
            "reminders_in_memory": self.host.reminders_in_memory,
            "store_writable": 0.0 if self.host.store.write_refusal else 1.0,
        }

    def _on_events(self, actor_type: str, actor_id: str, events: list[object]) -> None:
        for event in events:
            if isinstance(event, BannerChanged):
                self.event_bus.publish(event)

    async def _call(self, banner_id: str, method: str, *args: object, **kwargs: object) -> object:
        return await self.host.invoke(BANNER_ACTOR_TYPE, banner_id, method, *args, **kwargs)

    async def create_banner(self, banner_id: str, name: str) -> Registration:
        result = await self._call(banner_id, "register", name)
        assert isinstance(result, Registration)
        return result

    async def rotate_device_token(self, banner_id: str) -> str:
        return str(await self._call(banner_id, "rotate_device_token"))

    async def authenticate_device(self, banner_id: str, token: str) -> Banner:
        return await self._banner(banner_id, "check_device_token", token)

    async def device_online(self, banner_id: str) -> Banner:
        return await self._banner(banner_id, "device_online")

    async def device_offline(self, banner_id: str) -> Banner:
        return await self._banner(banner_id, "device_offline")

    async def device_ack(self, banner_id: str, display_version: int) -> Banner:
        return await self._banner(banner_id, "device_ack", display_version)

    async def _banner(self, banner_id: str, method: str, *args: object) -> Banner:
        result = await self._call(banner_id, method, *args)
        assert isinstance(result, Banner)
        return result

    async def get_banner(self, banner_id: str) -> Banner:
        return await self._banner(banner_id, "get")

    async def delete_banner(self, banner_id: str) -> None:
        await self._call(banner_id, "delete")

    async def submit_message(
        self,
        banner_id: str,
        text: str,
        *,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> SubmitOutcome:
        result = await self._call(
            banner_id, "submit", text, idempotency_key=idempotency_key, expected_version=expected_version
        )
        assert isinstance(result, SubmitOutcome)
        return result

    async def clear_message(self, banner_id: str) -> Banner:
        return await self._banner(banner_id, "clear")

    async def list_banners(self, *, after: str | None, limit: int, search: str | None = None) -> list[Banner]:
        store = self.host.store
        if search:
            rows = store.search_state(BANNER_ACTOR_TYPE, BANNER_KEY, "name", search.lower(), after, limit)
        else:
            rows = store.page_state(BANNER_ACTOR_TYPE, BANNER_KEY, after, limit)
        return [Banner.model_validate_json(raw) for _, raw in rows]
