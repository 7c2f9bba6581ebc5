"""One client's subscription, shared by WebSocket and SSE: what it watches and what it is owed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from ..domain import Banner, BannerNotFound, check_banner_id
from ..events import banner_frame
from ..logs import about
from ..runtimes import BannerRuntime
from ._hub import StreamHub
from ._subscriber import Subscriber

log = logging.getLogger("airdisplay.realtime")

#: Banners one connection may watch. A UI page shows a few dozen; 1,000 bounds the snapshot burst.
MAX_BANNERS_PER_CONNECTION = 1000


class TooManyBanners(ValueError):
    """Raised when a subscription would exceed MAX_BANNERS_PER_CONNECTION."""


class StreamSession:
    """Keeps a subscriber's banner set in the hub and owes it a snapshot of each banner it adds."""

    def __init__(self, hub: StreamHub, runtime: BannerRuntime, subscriber: Subscriber) -> None:
        self.hub = hub
        self.runtime = runtime
        self.subscriber = subscriber
        self.banners: set[str] = set()

    async def subscribe(self, banner_ids: Iterable[str], known: dict[str, int] | None = None) -> None:
        """Watch more banners; the ones the client lacks (or has stale) get their current state first."""
        await self._add(_checked(banner_ids), known or {})

    async def _add(self, ids: list[str], known: dict[str, int]) -> None:
        if len(self.banners.union(ids)) > MAX_BANNERS_PER_CONNECTION:
            raise TooManyBanners(f"a connection can watch at most {MAX_BANNERS_PER_CONNECTION} banners")
        new = [banner_id for banner_id in ids if banner_id not in self.banners]
        self.banners.update(new)
        # Watch before reading the snapshot: a change that lands in between arrives as a live event and
        # the subscriber's version check drops whichever of the two is older.
        self.hub.watch(self.subscriber, new)
        for banner_id in ids:
            if banner_id in known:
                self.subscriber.knows(banner_id, known[banner_id])
        owed = set(new).union(known)
        await self._send_snapshots([b for b in ids if b in owed], known)

    def unsubscribe(self, banner_ids: Iterable[str]) -> None:
        gone = [banner_id for banner_id in banner_ids if banner_id in self.banners]
        self.banners.difference_update(gone)
        self.hub.unwatch(self.subscriber, gone)
        for banner_id in gone:
            self.subscriber.forget(banner_id)

    async def replace(self, banner_ids: Iterable[str], known: dict[str, int] | None = None) -> None:
        """Watch exactly these banners (a UI turning a page)."""
        ids = _checked(banner_ids)
        keep = set(ids)
        self.unsubscribe([b for b in self.banners if b not in keep])
        await self._add(ids, known or {})

    def close(self) -> None:
        self.hub.drop(self.subscriber, self.banners)
        self.subscriber.close()
        self.banners.clear()

    async def _send_snapshots(self, banner_ids: list[str], known: dict[str, int]) -> None:
        results = await asyncio.gather(
            *(self.runtime.get_banner(banner_id) for banner_id in banner_ids), return_exceptions=True
        )
        now = datetime.now(UTC)
        for banner_id, result in zip(banner_ids, results, strict=True):
            if banner_id not in self.banners:
                continue  # unsubscribed while the snapshot was read
            # A client that knows a version above the current one saw an earlier life of this id (the
            # banner was deleted, maybe registered again): the snapshot replaces what it has, unless a live
            # event already superseded its knowledge while the snapshot was read.
            claimed = known.get(banner_id)
            stale_life = claimed is not None and self.subscriber.version_of(banner_id) == claimed
            if isinstance(result, Banner):
                frame = banner_frame("snapshot", banner_id, result.version, result, result.updated_at)
                resets = stale_life and claimed is not None and result.version < claimed
                self.subscriber.offer(banner_id, result.version, frame, resets=resets)
            elif isinstance(result, BannerNotFound):
                frame = banner_frame("missing", banner_id, 0, None, now)
                self.subscriber.offer(banner_id, 0, frame, resets=stale_life and bool(claimed))
            else:
                log.warning("snapshot of %s failed: %s", banner_id, result, extra=about(banner_id))


def _checked(banner_ids: Iterable[str]) -> list[str]:
    ids = list(dict.fromkeys(banner_ids))
    if len(ids) > MAX_BANNERS_PER_CONNECTION:
        raise TooManyBanners(f"a connection can watch at most {MAX_BANNERS_PER_CONNECTION} banners")
    return [check_banner_id(banner_id) for banner_id in ids]
