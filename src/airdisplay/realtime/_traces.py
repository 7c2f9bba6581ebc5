"""Deliveries as spans of the change's trace (tracing on only; airdisplay/tracing.py).

When a change is published its trace is noted on each outbox that queues its frame (`offered`); when a
sender has written that frame to its client, `delivered` records a span from queued to written, a child
of the change's span: one per WebSocket, SSE stream and device that got it. A frame coalesced away
(the client fell behind) has no delivery span: its newer frame has.
"""

from __future__ import annotations

from opentelemetry.trace import SpanContext

from .. import tracing
from ._subscriber import Outgoing, Subscriber


def offered(subscriber: Subscriber, banner_id: str, version: int, trace: SpanContext | None) -> None:
    """The subscriber queued the frame of `version` of the banner, published in `trace`."""
    if trace is not None:
        subscriber.trace(banner_id, version, trace)


def delivered(subscriber: Subscriber, item: Outgoing, channel: str) -> SpanContext | None:
    """The frame `item` was written to the client: its delivery span, if its change was traced."""
    found = subscriber.traced(item)
    if found is None:
        return None
    parent, queued_ns = found
    assert isinstance(parent, SpanContext)
    attributes: dict[str, str | int] = {"airdisplay.channel": channel, "banner.id": item.banner_id or ""}
    attributes["banner.display_version" if channel == "device" else "banner.version"] = item.version
    with tracing.span(f"deliver {channel}", parent=parent, start_ns=queued_ns, attributes=attributes) as span:
        return span.get_span_context()
