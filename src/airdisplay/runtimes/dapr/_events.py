"""Banner events over Dapr pub/sub: published in turn order through daprd, delivered back to every replica.

Failure rules:
- `publish` never blocks the turn: events wait in an in-memory queue and one sender posts them to daprd
  in order, retrying with backoff until daprd accepts each one, so per-banner order is kept.
- Events still queued when the process dies are lost; subscribers recover the state on their next
  subscribe (every stream starts with a snapshot), so no client keeps a stale banner for good.
- Delivery from daprd is at least once and may repeat; subscribers drop versions they have already seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx

from ...domain import BannerChanged
from ...events import EventBus, change_to_json

log = logging.getLogger("airdisplay.dapr.events")

#: Retry delays for a publish that daprd refused or could not take (seconds, capped).
RETRY_FIRST, RETRY_MAX = 0.2, 10.0
#: How long stop() waits for queued events to go out.
FLUSH_SECONDS = 5.0


class DaprEventBus(EventBus):
    """Publishes to `POST /v1.0/publish/<pubsub>/<topic>` on the sidecar; deliveries come in via `deliver`."""

    def __init__(self, dapr_url: str, pubsub: str, topic: str, api_token: str | None = None) -> None:
        super().__init__()
        self.pubsub, self.topic = pubsub, topic
        self._url = f"{dapr_url.rstrip('/')}/v1.0/publish/{pubsub}/{topic}"
        self._headers = {"dapr-api-token": api_token} if api_token else {}
        self._queue: asyncio.Queue[BannerChanged] = asyncio.Queue()
        self._client: httpx.AsyncClient | None = None
        self._sender: asyncio.Task[None] | None = None

    def publish(self, change: BannerChanged) -> None:
        self._queue.put_nowait(change)

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=10)
        self._sender = asyncio.create_task(self._send_all(), name="airdisplay-dapr-publisher")

    async def stop(self) -> None:
        if self._sender is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), FLUSH_SECONDS)
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        if self._client is not None:
            await self._client.aclose()

    async def _send_all(self) -> None:
        assert self._client is not None
        while True:
            change = await self._queue.get()
            delay = RETRY_FIRST
            while True:
                try:
                    response = await self._client.post(
                        self._url, json=change_to_json(change), headers=self._headers
                    )
                    if response.status_code < 300:
                        break
                    log.warning("daprd refused an event (%s): %s", response.status_code, response.text[:200])
                except httpx.HTTPError as exc:
                    log.warning("publishing to daprd failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
            self._queue.task_done()
