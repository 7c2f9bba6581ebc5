"""Tracing with OpenTelemetry: off unless the standard `OTEL_*` variables ask for it.

One trace per submit: the HTTP request (`POST /api/v1/banners/{banner_id}/message`), the actor turn and
its durable commit, then one span for each delivery of the change, to a WebSocket or SSE client and to the
banner's device, and the device's ack (a turn of its own) under that display. A W3C `traceparent` from the
client is the trace's parent, and calls to daprd carry it on (actor calls and publishes), so on Dapr a
trace crosses replicas. An expiry starts a trace of its own, linked to the submit that set it.

Spans carry ids and versions, never a message's text.

Off, it costs one test of `enabled` at each point below, and nothing else (no span, no context lookup).

On, whether a trace is kept is decided once, where it begins (a request without a sampled `traceparent`,
an expiry, a device's ack), by one random draw against the sampling ratio, before any span exists; a
request left out runs with a mark in its context and makes no span at all. Letting the SDK's sampler
decide instead (a non-recording span per request, and its context) cost 19% of the submit path's CPU at
1% sampling; this way +1.8% (the median of 10 paired rounds, bench/tracing_cost.py,
docs/observability.md). Under a kept trace every span is kept (the SDK samples parent-based, always on).

Switched on by any of `OTEL_TRACES_EXPORTER` (`otlp` or `console`; `none` is off),
`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, unless `OTEL_SDK_DISABLED=true`.
The exporter is OTLP over HTTP/protobuf (`OTEL_EXPORTER_OTLP_PROTOCOL` must be `http/protobuf`, its
default here); service name and resource come from the usual variables (`OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`), the sampling from `OTEL_TRACES_SAMPLER` (`parentbased_traceidratio` with
`OTEL_TRACES_SAMPLER_ARG`, the default `parentbased_always_on`, `parentbased_always_off`, or the same
without `parentbased_`, taken as parent-based: a client's sampled `traceparent` is always followed).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import INVALID_SPAN, Link, NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

#: Whether tracing is on: tested at every instrumented point, so off costs one global read.
enabled = False
_tracer: trace.Tracer = trace.NoOpTracer()
_provider: TracerProvider | None = None
#: The share of new traces kept (OTEL_TRACES_SAMPLER and _ARG).
_ratio = 1.0
#: Set in the context of work whose trace was left out: nothing under it makes a span.
_DROPPED: ContextVar[bool] = ContextVar("airdisplay_trace_dropped", default=False)
#: OTEL_TRACES_SAMPLER values and whether their ratio comes from OTEL_TRACES_SAMPLER_ARG (else 1 or 0).
_SAMPLERS = {"always_on": 1.0, "always_off": 0.0, "traceidratio": None}

INSTRUMENTATION_NAME = "airdisplay"


class TracingConfigError(ValueError):
    """Raised when the `OTEL_*` variables ask for tracing this server cannot do."""


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """True if the environment asks for tracing (see the module's docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure_tracing(environ: Mapping[str, str] = os.environ) -> bool:
    """Switch tracing on if the environment asks for it; True if it is on. Raises TracingConfigError."""
    if not wanted(environ):
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    exporter_name = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        protocol = environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        )
        if protocol.strip() != "http/protobuf":
            raise TracingConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: this server exports OTLP over http/protobuf only"
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={exporter_name!r}: this server exports to otlp or console (or none)"
        )
    ratio = sampling_ratio(environ)
    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME", "airdisplay")})
    provider = TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_ON))  # roots: `ratio`, here
    provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider, ratio)
    return True


def sampling_ratio(environ: Mapping[str, str]) -> float:
    """The share of new traces to keep, from OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG."""
    name = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    fixed = _SAMPLERS.get(name.removeprefix("parentbased_"), -1.0)
    if fixed == -1.0:
        raise TracingConfigError(
            f"OTEL_TRACES_SAMPLER={name!r}: this server samples with (parentbased_)traceidratio, "
            "always_on or always_off"
        )
    if fixed is not None:
        return fixed
    argument = environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
    try:
        ratio = float(argument)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise TracingConfigError(f"OTEL_TRACES_SAMPLER_ARG={argument!r}: give a ratio from 0 to 1")
    return ratio


def install(provider: TracerProvider, ratio: float = 1.0) -> None:
    """Trace into `provider` from now on, keeping `ratio` of new traces (tests give one with an in-memory
    exporter). The provider's sampler must keep what it is given (parent-based, always on)."""
    global enabled, _tracer, _provider, _ratio
    _provider = provider
    _tracer = provider.get_tracer(INSTRUMENTATION_NAME)
    _ratio = ratio
    enabled = True


def shutdown() -> None:
    """Export what is buffered and switch tracing off."""
    global enabled, _tracer, _provider
    enabled = False
    _tracer = trace.NoOpTracer()
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def tracer() -> trace.Tracer:
    return _tracer


def begin() -> bool:
    """Decide whether a trace beginning here is kept: one random draw against the sampling ratio."""
    return _ratio >= 1.0 or random.random() < _ratio


def dropped() -> Token[bool]:
    """Mark the running context as left out of tracing (undo with `undrop(token)`)."""
    return _DROPPED.set(True)


def undrop(token: Token[bool]) -> None:
    _DROPPED.reset(token)


def here() -> bool:
    """False if a span begun now could not be kept: tracing is off, the running work was left out, or its
    span is not sampled. Where no trace runs yet it is True, and `span` makes the one draw that decides."""
    if not enabled or _DROPPED.get():
        return False
    found = trace.get_current_span().get_span_context()
    return not found.is_valid or bool(found.trace_flags.sampled)


def current() -> SpanContext | None:
    """The running code's span context if it is sampled (only then is there a trace to continue)."""
    if _DROPPED.get():
        return None
    found = trace.get_current_span().get_span_context()
    return found if found.trace_flags.sampled else None


def log_ids() -> dict[str, str]:
    """`trace_id` and `span_id` of the running code's span, for a log line; empty when there is none."""
    if not enabled:
        return {}
    found = trace.get_current_span().get_span_context()
    if not found.is_valid:
        return {}
    return {"trace_id": format(found.trace_id, "032x"), "span_id": format(found.span_id, "016x")}


@contextmanager
def span(
    name: str,
    *,
    parent: SpanContext | None = None,
    new_trace: bool = False,
    links: Sequence[SpanContext] = (),
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int] | None = None,
    start_ns: int | None = None,
) -> Iterator[Span]:
    """A span, current while the block runs: a child of `parent` if given, of a new trace if `new_trace`,
    else of the running code's span (ask `here()` first on a hot path).

    A new trace (`new_trace`, or no running span) is kept as the sampling ratio says, or always when it
    links to a kept one (an expiry of a traced submit); a trace left out yields an invalid span, and
    nothing under the block makes a span either."""
    starts = parent is None and (new_trace or not trace.get_current_span().get_span_context().is_valid)
    if starts and not links and (_DROPPED.get() or not begin()):
        token = _DROPPED.set(True)
        try:
            yield INVALID_SPAN
        finally:
            _DROPPED.reset(token)
        return
    if parent is not None:
        ctx = trace.set_span_in_context(NonRecordingSpan(parent))
    elif starts:
        ctx = otel_context.Context()
    else:
        ctx = None
    # A kept span inside work left out (daprd's reminder call, say): what runs in it is traced.
    kept = _DROPPED.set(False) if _DROPPED.get() else None
    try:
        with _tracer.start_as_current_span(
            name,
            context=ctx,
            kind=kind,
            attributes=attributes,
            links=[Link(link) for link in links],
            start_time=start_ns,
        ) as opened:
            yield opened
    finally:
        if kept is not None:
            _DROPPED.reset(kept)


def inject_into(headers: MutableMapping[str, str]) -> None:
    """Add the running trace's `traceparent` (and `tracestate`) to outgoing headers. Work left out of
    tracing sends a `traceparent` that says so (not sampled), so that the next hop leaves it out too."""
    if _DROPPED.get() and not trace.get_current_span().get_span_context().is_valid:
        trace_id, span_id = random.getrandbits(128) or 1, random.getrandbits(64) or 1
        headers["traceparent"] = f"00-{trace_id:032x}-{span_id:016x}-{TraceFlags.DEFAULT:02x}"
        return
    inject(headers)


def parent_from(headers: Mapping[str, str]) -> SpanContext | None:
    """The span context a `traceparent` header names, if valid."""
    found = trace.get_current_span(extract(headers)).get_span_context()
    return found if found.is_valid else None
