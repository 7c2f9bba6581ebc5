"""The one interface the HTTP edge talks to; each runtime (embedded, Dapr) implements it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..domain import Banner, BannerChanged, SubmitOutcome
from ..events import EventBus, Published
from .behaviour import Registration

if TYPE_CHECKING:
    from fastapi import FastAPI


class RuntimeUnavailable(RuntimeError):
    """Raised when the runtime cannot reach the banner actors (sidecar down, network); nothing changed."""


#: Receives every committed banner change, in version order per banner.
ChangeListener = Callable[[BannerChanged], None]


class BannerRuntime(ABC):
    """Where banner actors live: start/stop, the banner operations, and a listing for the fleet view."""

    #: The name operators choose it by (`airdisplay serve --runtime NAME`).
    name: str
    #: Carries every committed change to this process's subscribers (streams, device links).
    event_bus: EventBus

    def install(self, app: FastAPI) -> None:  # noqa: B027 - most runtimes need no routes of their own
        """Add routes the runtime itself needs (Dapr: the ones daprd calls)."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    def is_ready(self) -> bool:
        """True while the runtime accepts calls."""

    def unready_reason(self) -> str | None:
        """Why the runtime cannot take every call now (None while it can); /readyz answers 503 with it."""
        return None if self.is_ready() else "the banner runtime is starting or stopping"

    @abstractmethod
    async def create_banner(self, banner_id: str, name: str) -> Registration:
        """Register a banner; the registration carries its device token (shown once)."""

    @abstractmethod
    async def get_banner(self, banner_id: str) -> Banner: ...

    @abstractmethod
    async def delete_banner(self, banner_id: str) -> None: ...

    @abstractmethod
    async def submit_message(
        self,
        banner_id: str,
        text: str,
        *,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> SubmitOutcome: ...

    @abstractmethod
    async def clear_message(self, banner_id: str) -> Banner: ...

    @abstractmethod
    async def rotate_device_token(self, banner_id: str) -> str: ...

    @abstractmethod
    async def authenticate_device(self, banner_id: str, token: str) -> Banner:
        """The banner if `token` opens its device channel; raises DeviceTokenInvalid or BannerNotFound."""

    @abstractmethod
    async def device_online(self, banner_id: str) -> Banner: ...

    @abstractmethod
    async def device_offline(self, banner_id: str) -> Banner: ...

    @abstractmethod
    async def device_ack(self, banner_id: str, display_version: int) -> Banner: ...

    @abstractmethod
    async def list_banners(self, *, after: str | None, limit: int, search: str | None = None) -> list[Banner]:
        """Banners ordered by id, strictly after `after`; a keyset page, fast at any fleet size.

        With `search`, only banners whose id or name starts with it (case-insensitive).
        """

    def gauges(self) -> dict[str, float]:
        """Figures about the runtime's load for the metrics endpoint (name: value)."""
        return {}

    def add_listener(self, listener: ChangeListener) -> None:
        """Call `listener` with every committed change this process hears of (after it is durable)."""

        def forward(event: Published) -> None:
            listener(event.change)

        self.event_bus.subscribe(forward)
