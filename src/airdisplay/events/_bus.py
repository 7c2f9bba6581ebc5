"""The event bus: committed banner changes in, subscribers out. One interface, several transports."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable

from ..domain import BannerChanged
from ..logs import about
from ._frames import Published

log = logging.getLogger("airdisplay.events")

Handler = Callable[[Published], None]


class EventBus(ABC):
    """Carries every committed banner change to this process's subscribers, in version order per banner."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        """Call `handler` (which must not block) for every event; returns a function that unsubscribes."""
        self._handlers.append(handler)
        return lambda: self._handlers.remove(handler)

    @abstractmethod
    def publish(self, change: BannerChanged) -> None:
        """Publish a change that is already durable."""

    async def start(self) -> None:  # noqa: B027 - transports with a connection override it
        """Connect the transport."""

    async def stop(self) -> None:  # noqa: B027
        """Disconnect the transport."""

    def deliver(self, change: BannerChanged) -> None:
        """Hand a change that arrived from the transport to this process's subscribers."""
        self._deliver(Published(change))

    def _deliver(self, event: Published) -> None:
        for handler in list(self._handlers):
            try:
                handler(event)
            except Exception:
                log.exception(
                    "event handler failed for %s v%s",
                    event.banner_id,
                    event.version,
                    extra=about(event.banner_id),
                )


class InProcessEventBus(EventBus):
    """Delivers synchronously in the publishing turn, so per-banner order is the turn order."""

    def publish(self, change: BannerChanged) -> None:
        self.deliver(change)
