"""The fan-out hub: which subscriber watches which banner, fed by the event bus."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.trace import SpanContext

from .. import tracing
from ..events import EventBus, Published
from ._subscriber import Subscriber
from ._traces import offered


class StreamHub:
    """Routes each published event to the subscribers of its banner, and to the legacy firehose."""

    def __init__(self, bus: EventBus) -> None:
        self._by_banner: dict[str, set[Subscriber]] = {}
        self._firehose: set[Subscriber] = set()
        bus.subscribe(self._on_event)  # for the hub's life, which is the app's

    def watch(self, subscriber: Subscriber, banner_ids: Iterable[str]) -> None:
        for banner_id in banner_ids:
            self._by_banner.setdefault(banner_id, set()).add(subscriber)

    def unwatch(self, subscriber: Subscriber, banner_ids: Iterable[str]) -> None:
        for banner_id in banner_ids:
            watchers = self._by_banner.get(banner_id)
            if watchers is not None:
                watchers.discard(subscriber)
                if not watchers:
                    del self._by_banner[banner_id]

    def watch_all(self, subscriber: Subscriber) -> None:
        """Every banner's changes, as legacy frames (the original demo's `/ws`)."""
        self._firehose.add(subscriber)

    def drop(self, subscriber: Subscriber, banner_ids: Iterable[str] = ()) -> None:
        self.unwatch(subscriber, banner_ids)
        self._firehose.discard(subscriber)

    @property
    def subscribers(self) -> set[Subscriber]:
        """Every connected subscriber (computed on demand: for probes and tests, not the hot path)."""
        found = set(self._firehose)
        for watchers in self._by_banner.values():
            found |= watchers
        return found

    def _on_event(self, event: Published) -> None:
        if tracing.enabled:
            trace = tracing.current()
            if trace is not None:
                self._on_traced_event(event, trace)
                return
        watchers = self._by_banner.get(event.banner_id)
        if watchers:
            frame = event.frame  # serialised once, shared by every subscriber
            for subscriber in watchers:
                subscriber.offer(event.banner_id, event.version, frame, resets=event.resets)
        if self._firehose:
            legacy = event.legacy
            for subscriber in self._firehose:
                subscriber.offer(event.banner_id, event.version, legacy, resets=event.resets)

    def _on_traced_event(self, event: Published, trace: SpanContext) -> None:
        """`_on_event` with tracing on: each queued frame notes the change's trace (realtime/_traces.py)."""
        banner_id, version = event.banner_id, event.version
        for subscriber in self._by_banner.get(banner_id, ()):
            if subscriber.offer(banner_id, version, event.frame, resets=event.resets):
                offered(subscriber, banner_id, version, trace)
        for subscriber in self._firehose:
            if subscriber.offer(banner_id, version, event.legacy, resets=event.resets):
                offered(subscriber, banner_id, version, trace)
