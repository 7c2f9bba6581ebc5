"""Banner events over Dapr pub/sub: published in turn order through daprd, delivered back to every replica.

Failure rules:
- The banner actor hands each change to `send` after its state is saved and before it answers: when daprd
  takes the event (the Redis pub/sub has it in its stream) the caller is answered, so an acknowledged
  change is on the stream even if this replica dies the next instant.
- If daprd refuses or cannot be reached, the event joins a queue that one sender retries with backoff
  until daprd takes it; while that queue is not empty every later event joins it too, so order per banner
  holds. The turn is not failed for it: its state is already durable. What the turn does after a publish
  (`then`: the fleet directory's write) runs only once daprd has taken the event, so a directory level
  with the actor means its events are out. If the process dies first, the banner actor's next
  activation finds the directory behind and publishes its state again (_actor.py).
- Delivery from daprd is at least once and may repeat; subscribers drop versions they have already seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ...domain import BannerChanged
from ...events import EventBus, change_to_bytes
from ._sidecar import Sidecar, SidecarUnreachable

log = logging.getLogger("airdisplay.dapr.events")

#: Runs once daprd has taken an event; must not raise.
AfterSent = Callable[[], Awaitable[None]]

#: Retry delays for a publish that daprd refused or could not take (seconds, capped).
RETRY_FIRST, RETRY_MAX = 0.2, 10.0
#: How long stop() waits for queued events to go out.
FLUSH_SECONDS = 5.0
#: A publish is one loopback call to daprd and one XADD; past this, the event waits in the queue instead.
PUBLISH_TIMEOUT = 5.0


class DaprEventBus(EventBus):
    """Publishes to `POST /v1.0/publish/<pubsub>/<topic>` on the sidecar; deliveries come in via `deliver`."""

    def __init__(self, sidecar: Sidecar, pubsub: str, topic: str) -> None:
        super().__init__()
        self.pubsub, self.topic = pubsub, topic
        self._sidecar = sidecar
        self._path = f"/v1.0/publish/{pubsub}/{topic}"
        self._started = False
        self._queue: asyncio.Queue[tuple[BannerChanged, AfterSent | None]] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        #: Events queued or being retried (the queue is empty while its last one is retried).
        self._waiting = 0

    def publish(self, change: BannerChanged) -> None:
        """Queue a change for the sender (for callers that cannot wait; turns use `send`)."""
        self._enqueue(change, None)

    async def send(self, change: BannerChanged, then: AfterSent | None = None) -> None:
        """Hand a change to daprd now and run `then`, or queue both behind earlier ones still waiting."""
        if not self._started or self._waiting or not await self._post(change):
            self._enqueue(change, then)
        elif then is not None:
            await then()

    def _enqueue(self, change: BannerChanged, then: AfterSent | None) -> None:
        self._waiting += 1
        self._queue.put_nowait((change, then))

    async def start(self) -> None:
        self._started = True
        self._sender = asyncio.create_task(self._send_all(), name="airdisplay-dapr-publisher")

    async def stop(self) -> None:
        if self._sender is not None:
            try:
                await asyncio.wait_for(self._queue.join(), FLUSH_SECONDS)
            except TimeoutError:
                # Not lost: each banner's state is durable, and its next activation publishes it again.
                log.warning(
                    "stopping with %d banner event(s) daprd did not take within %g s; streams on other "
                    "replicas see those banners again when they next change or activate",
                    self._waiting,
                    FLUSH_SECONDS,
                )
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        await self._sidecar.close()  # the bus stops last (after the runtime): its flush is the last call

    async def _post(self, change: BannerChanged) -> bool:
        body = change_to_bytes(change)  # around the banner's stored JSON: not serialised again
        try:
            status, answer = await self._sidecar.request("POST", self._path, body, limit=PUBLISH_TIMEOUT)
        except SidecarUnreachable as exc:
            log.warning("publishing to daprd failed: %s", exc)
            return False
        if status >= 300:
            log.warning("daprd refused an event (%s): %r", status, answer[:200])
            return False
        return True

    async def _send_all(self) -> None:
        while True:
            change, then = await self._queue.get()
            delay = RETRY_FIRST
            while not await self._post(change):
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
            if then is not None:
                await then()
            self._waiting -= 1
            self._queue.task_done()
