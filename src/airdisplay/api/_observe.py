"""Every HTTP request measured, and traced when tracing is on: the outermost layer of the app.

`airdisplay_http_request_duration_seconds{method, route, status}` times each request from the first byte
the app sees to the last it sends; `route` is the route's template (`/api/v1/banners/{banner_id}`), so the
label's values are as few as the routes. A streaming response (SSE) counts when it ends. The submit fast
path is timed by the app itself (api/app.py, with tracing off): wrapping `send` for it was measurable.
The histogram is a FastHistogram (airdisplay/histogram.py), lock-free.

With tracing on (airdisplay/tracing.py), each request is a server span that continues a client's W3C
`traceparent`, named by its route once routing has found it (`POST /api/v1/banners/{banner_id}/message`),
with the banner's id and the status. WebSockets get no span of their own (a device link lasts hours):
what travels over them is traced frame by frame (realtime/_traces.py).

The span is made here rather than by OpenTelemetry's ASGI middleware (opentelemetry-instrumentation-asgi):
that one reads and decodes every header, builds a dozen attributes and wraps `receive` and `send` for every
request, sampled or not. With it, tracing at 1% sampling took the submit path from 288 to 547 us of CPU
a request (bench/submit_vs_bare.py). Here a request whose trace is left out costs a header scan and one
random draw, and makes no span (tracing.py).
"""

from __future__ import annotations

import time

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import tracing
from ..histogram import FastHistogram, HistogramChild

#: Seconds: a submit takes ~0.5 ms on an idle server and tens of ms under load (docs/benchmarks); a
#: stream's whole life lands in the last buckets.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
#: The label of a request no route took (a 404 or 405 from the router).
UNMATCHED = "unmatched"


class HttpObserver:
    """Wraps the app: times every HTTP request, and traces it when tracing is on."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.latency = FastHistogram(
            "airdisplay_http_request_duration_seconds",
            "HTTP requests by method, route template and status: seconds from request to the end of the "
            "response",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], HistogramChild] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers when the app raises before its response starts

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            if tracing.enabled:
                await self._traced(scope, receive, sent)
            else:
                await self.app(scope, receive, sent)
        finally:
            self.observe(scope, status, time.perf_counter() - start)

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        """Count a request that took `seconds` and was answered `status`."""
        key = (scope["method"], route_of(scope), status)
        child = self._children.get(key)
        if child is None:
            method = key[0] if key[0] in _METHODS else "other"
            child = self._children[key] = self.latency.labels(method, key[1], str(status))
        child.observe(seconds)

    async def _traced(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The request in a server span, current while the app runs (its calls' spans are children); or,
        when its trace is left out, with nothing but that mark (tracing.py: one draw, no span)."""
        parent = _client_parent(scope["headers"])
        if not (tracing.begin() if parent is None else parent.trace_flags.sampled):
            dropped = tracing.dropped()
            # A client's unsampled trace goes on (unsampled) to daprd and the replica that hosts the actor.
            token = None if parent is None else otel_context.attach(_in_context(parent))
            try:
                await self.app(scope, receive, send)
            finally:
                if token is not None:
                    otel_context.detach(token)
                tracing.undrop(dropped)
            return
        context = otel_context.Context() if parent is None else _in_context(parent)
        span = tracing.tracer().start_span(scope["method"], context=context, kind=SpanKind.SERVER)
        token = otel_context.attach(trace.set_span_in_context(span))

        async def naming(message: Message) -> None:
            if message["type"] == "http.response.start":
                _describe(span, scope, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, naming)
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            otel_context.detach(token)
            span.end()


def _client_parent(headers: list[tuple[bytes, bytes]]) -> SpanContext | None:
    """The span a client's valid `traceparent` (and `tracestate`) names, if it sent one."""
    carrier = {}
    for name, value in headers:
        if name == b"traceparent" or name == b"tracestate":
            carrier[name.decode()] = value.decode("latin-1")
    return tracing.parent_from(carrier) if carrier else None


def _in_context(parent: SpanContext) -> otel_context.Context:
    return trace.set_span_in_context(NonRecordingSpan(parent))


def _describe(span: Span, scope: Scope, status: int) -> None:
    """Name the server span by its route and record what the response was."""
    route = route_of(scope)
    span.update_name(f"{scope['method']} {route}")
    span.set_attribute("http.request.method", scope["method"])
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    banner_id = scope.get("path_params", {}).get("banner_id")
    if isinstance(banner_id, str):
        span.set_attribute("banner.id", banner_id)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


def route_of(scope: Scope) -> str:
    """The template of the route that took the request (set by the router, or by the submit fast path)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED
