"""Traces of a real server (airdisplay/tracing.py): one submit from the client's traceparent through the turn,
the commit, every delivery and the device's ack; its expiry in a trace of its own, linked to it.

The spans go to OpenTelemetry's in-memory exporter instead of an OTLP collector, which is not installed
here; everything else is the real server on a real port.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from airdisplay import tracing
from airdisplay.logs import JsonLines
from tests.api.conftest import sse
from tests.conftest import StreamClient, connect_device, eventually, recv

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
SECRET_TEXT = "Meet me at gate 12"


def in_memory(ratio: float) -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, keeping `ratio` of new traces, for servers created from now on; off again
    after the test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider, ratio)
    try:
        yield exporter
    finally:
        tracing.shutdown()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every new trace kept."""
    yield from in_memory(1.0)


@pytest.fixture
def none_sampled() -> Iterator[InMemorySpanExporter]:
    """No new trace kept (a 0 ratio): only clients' sampled traces are."""
    yield from in_memory(0.0)


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def one(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = named(exporter, name)
    assert len(found) == 1, f"{name}: {[s.name for s in exporter.get_finished_spans()]}"
    return found[0]


def parent_of(span: ReadableSpan) -> int:
    assert span.parent is not None, f"{span.name} has no parent"
    return span.parent.span_id


async def test_a_submit_is_one_trace_from_the_request_to_the_device_ack(spans, start_server):
    server = await start_server(message_seconds=60)
    token = (await server.create("b1")).json()["device_token"]
    device = await connect_device(server, "b1", token)
    ui = await StreamClient.connect(server, "?banners=b1")
    try:
        assert (await recv(device))["type"] == "display"
        await ui.until(lambda f: f["type"] == "banner")
        async with sse(server, "/api/v1/banners/b1/events") as events:
            await events.next_event()  # the snapshot
            response = await server.client.post(
                "/api/v1/banners/b1/message",
                json={"text": SECRET_TEXT},
                headers={"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"},
            )
            assert response.status_code == 201
            version = response.json()["version"]
            display = await recv(device)
            assert display["text"] == SECRET_TEXT
            await ui.until(lambda f: f["type"] == "banner" and f["version"] == version)
            assert (await events.next_event())["data"]["version"] == version
            await device.send(json.dumps({"type": "ack", "version": display["version"]}))
            await eventually(lambda: named(spans, "banner device_ack"), what="the ack's turn span")
            await eventually(lambda: named(spans, "deliver sse"), what="the SSE delivery span")
    finally:
        await device.close()
        await ui.close()

    request = one(spans, "POST /api/v1/banners/{banner_id}/message")
    assert request.kind is SpanKind.SERVER
    assert format(request.context.trace_id, "032x") == TRACE_ID  # the client's trace, continued
    assert parent_of(request) == int(CLIENT_SPAN, 16)
    assert request.attributes["banner.id"] == "b1"
    assert request.attributes["http.route"] == "/api/v1/banners/{banner_id}/message"

    turn = one(spans, "banner submit")
    assert parent_of(turn) == request.context.span_id
    assert turn.attributes["banner.id"] == "b1" and turn.attributes["banner.version"] == version
    commits = [
        s for s in named(spans, "actor.commit") if s.parent and s.parent.span_id == turn.context.span_id
    ]
    assert len(commits) == 1

    # The submit's change, delivered to each client: the stream's frame (version), the device's display.
    deliveries = {
        s.name: s
        for s in spans.get_finished_spans()
        if s.name.startswith("deliver ")
        and (
            s.attributes.get("banner.version") == version
            or s.attributes.get("banner.display_version") == display["version"]
        )
    }
    assert set(deliveries) == {"deliver websocket", "deliver sse", "deliver device"}
    for delivery in deliveries.values():
        assert delivery.context.trace_id == request.context.trace_id
        assert parent_of(delivery) == turn.context.span_id
        assert delivery.start_time <= delivery.end_time
    shown = deliveries["deliver device"]
    assert shown.attributes["banner.display_version"] == display["version"]

    ack = one(spans, "device ack")
    assert ack.context.trace_id == request.context.trace_id and parent_of(ack) == shown.context.span_id
    assert parent_of(one(spans, "banner device_ack")) == ack.context.span_id

    for span in spans.get_finished_spans():  # ids and versions, never what people wrote
        assert SECRET_TEXT not in json.dumps(dict(span.attributes or {}), ensure_ascii=False), span.name


async def test_an_expiry_is_a_trace_of_its_own_linked_to_the_submit(spans, start_server):
    server = await start_server(message_seconds=0.5)
    await server.create("b1")
    ui = await StreamClient.connect(server, "?banners=b1")
    try:
        await ui.until(lambda f: f["type"] == "banner")
        assert (
            await server.client.post("/api/v1/banners/b1/message", json={"text": "hi"})
        ).status_code == 201
        await ui.until(lambda f: f["type"] == "banner" and f["kind"] == "message_expired")
        await eventually(
            lambda: [s for s in named(spans, "deliver websocket") if s.attributes["banner.version"] == 3],
            what="the expiry's delivery span",
        )
    finally:
        await ui.close()
    submit = one(spans, "banner submit")
    expiry = one(spans, "reminder expire")
    assert expiry.context.trace_id != submit.context.trace_id
    assert [link.context.span_id for link in expiry.links] == [submit.context.span_id]
    delivered = next(s for s in named(spans, "deliver websocket") if s.attributes["banner.version"] == 3)
    assert delivered.context.trace_id == expiry.context.trace_id
    assert parent_of(delivered) == expiry.context.span_id


async def test_a_request_without_traceparent_starts_a_trace(spans, start_server):
    server = await start_server()
    await server.create("b1")
    created = one(spans, "POST /api/v1/banners")
    assert created.parent is None
    assert one(spans, "banner register").context.trace_id == created.context.trace_id


async def test_with_tracing_on_a_submit_is_one_span_and_one_latency_sample(spans, start_server):
    """Tracing on, the submit fast path runs inside the observer's span (api/app.py): counted once."""
    server = await start_server(api_key="k" * 40, client_sends_key=True)
    await server.create("b1")
    await server.create("b2")
    for name in ("b1", "b2"):
        assert (
            await server.client.post(f"/api/v1/banners/{name}/message", json={"text": "a"})
        ).status_code == 201
    assert len(named(spans, "POST /api/v1/banners/{banner_id}/message")) == 2
    page = (await server.client.get("/metrics")).text
    series = (
        'airdisplay_http_request_duration_seconds_count{method="POST",'
        'route="/api/v1/banners/{banner_id}/message",status="201"} 2.0'
    )
    assert series in page.splitlines()


def test_json_log_lines_carry_the_trace_and_span_ids(spans):
    record = logging.LogRecord("airdisplay", logging.INFO, __file__, 1, "shown", None, None)
    with tracing.span("work") as span:
        inside = json.loads(JsonLines().format(record))
    outside = json.loads(JsonLines().format(record))
    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert inside["span_id"] == format(span.get_span_context().span_id, "016x")
    assert "trace_id" not in outside


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_tracing_is_off_unless_the_otel_variables_ask_for_it(environ, on):
    assert tracing.wanted(environ) is on


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
    ],
)
def test_tracing_it_cannot_do_is_refused_by_name(environ):
    with pytest.raises(tracing.TracingConfigError, match="OTEL_"):
        tracing.configure_tracing(environ)
    assert not tracing.enabled


async def test_a_request_left_out_of_tracing_makes_no_span_at_all(none_sampled, start_server):
    server = await start_server()
    await server.create("b1")
    ui = await StreamClient.connect(server, "?banners=b1")
    try:
        await ui.until(lambda f: f["type"] == "banner")
        unsampled = {"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-00"}
        response = await server.client.post(
            "/api/v1/banners/b1/message", json={"text": "a"}, headers=unsampled
        )
        assert response.status_code == 201
        await ui.until(lambda f: f["type"] == "banner" and f["kind"] == "message_shown")
        assert (await server.client.delete("/api/v1/banners/b1/message")).status_code == 200
        await ui.until(lambda f: f["type"] == "banner" and f["kind"] == "message_cleared")
        assert none_sampled.get_finished_spans() == ()  # not the requests, turns, commits or deliveries

        # A client's sampled trace is followed whatever the ratio.
        sampled = {"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"}
        response = await server.client.post("/api/v1/banners/b1/message", json={"text": "b"}, headers=sampled)
        assert response.status_code == 201
        await eventually(lambda: named(none_sampled, "deliver websocket"), what="the delivery span")
    finally:
        await ui.close()
    assert {format(s.context.trace_id, "032x") for s in none_sampled.get_finished_spans()} == {TRACE_ID}


@pytest.mark.parametrize(
    ("environ", "ratio"),
    [
        ({}, 1.0),
        ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}, 0.01),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}, 0.25),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, 0.0),
        ({"OTEL_TRACES_SAMPLER": "always_on"}, 1.0),
    ],
)
def test_the_sampling_ratio_comes_from_the_otel_sampler_variables(environ, ratio):
    assert tracing.sampling_ratio(environ) == ratio


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_TRACES_SAMPLER": "jaeger_remote"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
    ],
)
def test_a_sampler_it_cannot_honour_is_refused_by_name(environ):
    with pytest.raises(tracing.TracingConfigError, match="OTEL_TRACES_SAMPLER"):
        tracing.sampling_ratio(environ)


async def test_the_expiry_of_a_kept_trace_is_kept_whatever_the_ratio(none_sampled, start_server):
    server = await start_server(message_seconds=0.5)
    await server.create("b1")
    sampled = {"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"}
    response = await server.client.post("/api/v1/banners/b1/message", json={"text": "a"}, headers=sampled)
    assert response.status_code == 201
    expiry = await eventually(lambda: named(none_sampled, "reminder expire"), what="the expiry's span")
    submit = one(none_sampled, "banner submit")
    assert [link.context.span_id for link in expiry[0].links] == [submit.context.span_id]


async def test_a_trace_begun_outside_a_request_is_decided_by_one_draw(spans, start_server, monkeypatch):
    """`here()` lets the call through and `span` draws once: two draws would keep ratio squared."""
    server = await start_server()
    await server.create("b1")
    draws = []
    real_begin = tracing.begin

    def counted() -> bool:
        draws.append(1)
        return real_begin()

    monkeypatch.setattr(tracing, "begin", counted)
    await server.runtime.get_banner("b1")  # no request around it: a new trace begins at the call
    assert len(draws) == 1
    assert named(spans, "banner get")
