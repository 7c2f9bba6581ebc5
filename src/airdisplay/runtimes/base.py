"""The one interface the HTTP edge talks to; each runtime (embedded, Dapr) implements it.

The edge knows only this module's names: the runtime's errors are the family below (each runtime turns
its own failures into them where they leave it), and a runtime that serves routes of its own hands the
edge an ASGI app and the path prefixes it answers (`RuntimeEndpoints`), never a web framework's object.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from opentelemetry.trace import SpanKind
from prometheus_client.registry import Collector
from starlette.types import ASGIApp

from .. import tracing
from ..domain import (
    Banner,
    BannerChanged,
    BannerNotFound,
    BookingQueue,
    BookOutcome,
    HistoryEntry,
    HistoryPage,
    SubmitOutcome,
    read_banner_cursor,
)
from ..domain.history import with_showing
from ..events import EventBus, Published
from .behaviour import Registration

if TYPE_CHECKING:
    from ..access import HoldLedger

T = TypeVar("T")


class RuntimeUnavailable(RuntimeError):
    """Raised when the runtime cannot reach the banner actors (sidecar down, network); nothing changed."""


class RuntimeNotRunning(RuntimeUnavailable):
    """Raised when a call reaches a runtime that is not running (starting or stopping); nothing changed."""


class StorageUnavailable(RuntimeUnavailable):
    """Raised when the banners' storage refuses or fails a read or write (disk full, read-only, locked,
    unreachable); nothing changed, and the same call may succeed once the fault clears."""


#: Receives every committed banner change, in version order per banner.
ChangeListener = Callable[[BannerChanged], None]


@dataclass(frozen=True, slots=True)
class RuntimeEndpoints:
    """Routes a runtime serves itself (Dapr: the ones daprd calls): an ASGI app for every HTTP request
    whose path starts with one of `prefixes`. The edge passes those requests to it inside its own
    middleware (body limit, security headers), at the place of a route of its own."""

    app: ASGIApp
    prefixes: tuple[str, ...]


class BannerRuntime(ABC):
    """Where banner actors live: start/stop, the banner operations, and a listing for the fleet view.

    Its calls raise domain errors (BannerNotFound, BannerBusy, ...) for the banner rules, and the
    RuntimeUnavailable family when the runtime cannot serve them.
    """

    #: The name operators choose it by (`airdisplay serve --runtime NAME`).
    name: str
    #: Carries every committed change to this process's subscribers (streams, device links); the runtime
    #: starts it in `start` and stops it in `stop`.
    event_bus: EventBus

    def endpoints(self) -> RuntimeEndpoints | None:
        """Routes the runtime itself needs served (Dapr: the ones daprd calls); None for most runtimes."""
        return None

    @abstractmethod
    async def start(self) -> None:
        """Start the event bus, then the runtime; if that fails, the bus is stopped again."""

    async def shared_secret(self, name: str, size: int) -> bytes | None:
        """`size` random bytes named `name` that every process of the runtime shares (after `start`), made
        by the first to ask; None for a runtime of one process, which keeps its secrets in its data
        directory (the client hash key: api/_access.py)."""
        return None

    def hold_ledger(self) -> HoldLedger | None:
        """Where the booking quota keeps its holds, where all the runtime's processes must count the same
        (access/_bookings.py); None for a runtime of one process, whose quota counts in its memory."""
        return None

    @abstractmethod
    async def stop(self) -> None:
        """Stop the runtime, then its event bus (events of the last turns still go out)."""

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
        by: str | None = None,
    ) -> SubmitOutcome:
        """Show `text` unless a message shows; `by` says who sent it (for the banner's history)."""

    @abstractmethod
    async def clear_message(self, banner_id: str) -> Banner: ...

    @abstractmethod
    async def book(
        self, banner_id: str, text: str, *, by: str, idempotency_key: str | None = None
    ) -> BookOutcome:
        """Show `text` now if the banner is free, else queue it for the next free slot (domain/bookings.py);
        `by` says who booked (a key id or a keyed hash of the client address)."""

    @abstractmethod
    async def cancel_booking(self, banner_id: str, booking_id: str, token: str | None) -> Banner:
        """Cancel a waiting booking with its cancel token, or with `token` None as an operator."""

    @abstractmethod
    async def bookings(self, banner_id: str) -> BookingQueue:
        """The banner's waiting bookings with their texts (for an operator)."""

    async def history(self, banner_id: str, *, before: str | None, limit: int) -> HistoryPage:
        """What the banner showed, newest first, from cursor `before` (ValueError for a bad cursor).

        A message's entry is written when it ends, so the first page puts the one showing now ahead of
        what is recorded (a turn of the banner's own gives it); a deleted banner's history stays."""
        cursor = None if before is None else read_banner_cursor(before)
        showing = None
        if cursor is None:
            try:
                showing = await self._showing(banner_id)
            except BannerNotFound:
                showing = None
        return with_showing(await self._recorded(banner_id, cursor, limit), showing, cursor, limit)

    @abstractmethod
    async def _showing(self, banner_id: str) -> HistoryEntry | None:
        """The history entry of the message the banner shows now (BannerNotFound if it has none)."""

    @abstractmethod
    async def _recorded(self, banner_id: str, cursor: tuple[float, str] | None, limit: int) -> HistoryPage:
        """Up to `limit` recorded entries of the banner, newest first, strictly before `cursor`."""

    @abstractmethod
    async def fleet_history(
        self, *, since: datetime, until: datetime, after: str | None, limit: int
    ) -> HistoryPage:
        """What every banner showed from `since` until `until` (by when it showed), oldest first, from
        cursor `after` (ValueError for a bad cursor)."""

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

    def collectors(self) -> list[Collector]:
        """The runtime's own metrics (histograms) for the metrics endpoint."""
        return []

    def add_listener(self, listener: ChangeListener) -> None:
        """Call `listener` with every committed change this process hears of (after it is durable)."""

        def forward(event: Published) -> None:
            listener(event.change)

        self.event_bus.subscribe(forward)


def banner_call(
    method: str, banner_id: str, call: Awaitable[T], kind: SpanKind = SpanKind.INTERNAL
) -> Awaitable[T]:
    """A runtime's call of a banner's turn `method`, to await; when tracing keeps it, in a span
    `banner <method>` with the banner's id and the version its result shows. Otherwise it is `call` itself:
    no coroutine in between on the hot path."""
    if not tracing.here():
        return call
    return _traced_call(method, banner_id, call, kind)


async def _traced_call(method: str, banner_id: str, call: Awaitable[T], kind: SpanKind) -> T:
    with tracing.span(f"banner {method}", kind=kind, attributes={"banner.id": banner_id}) as span:
        result = await call
        version = _version_of(result)
        if version is not None:
            span.set_attribute("banner.version", version)
        return result


def _version_of(result: object) -> int | None:
    """The banner version a turn's result shows (a Banner, or an outcome holding one; or either as the
    JSON object a Dapr actor answers with)."""
    if isinstance(result, dict):
        banner = result.get("banner", result)
        version = banner.get("version") if isinstance(banner, dict) else None
    else:
        version = getattr(getattr(result, "banner", result), "version", None)
    return version if isinstance(version, int) else None
