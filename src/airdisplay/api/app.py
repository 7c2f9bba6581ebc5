"""The FastAPI application: routes, problem handlers, body limit, and the runtime's lifespan."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from .. import __version__, tracing
from ..config import Settings
from ..realtime import DeviceLinks, StreamHub
from ..runtimes import BannerRuntime, RuntimeEndpoints, open_runtime
from ..web import STATIC_DIR
from ._access import CLIENT_HASH_KEY_BYTES, CLIENT_HASH_KEY_NAME, AccessControl
from ._headers import SecurityHeaders
from ._limits import BodySizeLimit
from ._loop_watch import LoopWatch
from ._metrics import ServiceMetrics
from ._observe import HttpObserver
from ._openapi import install_openapi
from ._submit import SubmitFastPath
from .problems import install_problem_handlers
from .routes import banners, bookings, devices, events, health, history, legacy, stream, ui
from .routes import metrics as metrics_route
from .routes.devices import DeviceChannel


class RuntimeRoute(BaseRoute):
    """The runtime's own routes (`RuntimeEndpoints`) in the app's router: every HTTP request under one of
    its prefixes goes to its ASGI app, inside the app's middleware like a route of the app's own."""

    def __init__(self, endpoints: RuntimeEndpoints) -> None:
        self.app = endpoints.app
        self.prefixes = endpoints.prefixes
        #: The route's name in metrics and spans, when the runtime's own router names none.
        self.path = "|".join(f"{prefix}*" for prefix in endpoints.prefixes)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["path"].startswith(self.prefixes):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class AirDisplayAPI(FastAPI):
    """FastAPI with the submit fast path in front of its middleware stack (api/_submit.py), and every HTTP
    request measured (and traced, when tracing is on) around both (api/_observe.py)."""

    fast_submit: SubmitFastPath | None = None
    observer: HttpObserver | None = None
    device_channel: DeviceChannel | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        observer = self.observer
        if observer is None or scope["type"] != "http":
            devices = self.device_channel
            banner_id = None if devices is None else devices.handles(scope)
            if banner_id is not None:  # a device link: one task, no FastAPI frames (api/routes/devices.py)
                assert devices is not None
                await devices(scope, receive, send, banner_id)
                return
            await self.serve(scope, receive, send)
            return
        fast = self.fast_submit
        banner_id = None if fast is None or tracing.enabled else fast.handles(scope)
        if banner_id is None:
            await observer(scope, receive, send)
            return
        # The hottest route, timed here without the observer's wrapper around `send` (it returns its status).
        assert fast is not None
        started = time.perf_counter()
        status = 500  # what the server answers if the path raises
        try:
            status = await fast(scope, receive, send, banner_id)
        finally:
            observer.observe(scope, status, time.perf_counter() - started)

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app inside the observer. With tracing on the submit fast path is taken here, inside the
        request's span; with it off `__call__` has already taken the fast path's requests."""
        fast = self.fast_submit
        if fast is not None and (tracing.enabled or self.observer is None):
            banner_id = fast.handles(scope)
            if banner_id is not None:
                await fast(scope, receive, send, banner_id)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, runtime: BannerRuntime | None = None) -> FastAPI:
    """An AirDisplay app; it starts the runtime on startup and stops it on shutdown."""
    runtime = runtime or open_runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()  # and its event bus: the runtime owns it
        try:
            shared = await runtime.shared_secret(CLIENT_HASH_KEY_NAME, CLIENT_HASH_KEY_BYTES)
        except BaseException:
            await runtime.stop()
            raise
        if shared is not None:
            access.use_client_key(shared)
        links.start()
        loop_watch.start()
        try:
            yield
        finally:
            await loop_watch.stop()
            await links.stop()
            if isinstance(app, AirDisplayAPI) and app.device_channel is not None:
                await app.device_channel.settle()  # the links have ended: marks still within their grace
            await runtime.stop()

    app = AirDisplayAPI(
        docs_url=None,  # served by routes/ui.py from local assets: /docs works offline too
        title="AirDisplay",
        version=__version__,
        summary="Electronic aircraft banners: one message at a time, "
        f"{settings.message_seconds:g} seconds each, live.",
        lifespan=lifespan,
    )
    bus = runtime.event_bus
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.bus = bus
    app.state.hub = StreamHub(bus)
    metrics = ServiceMetrics()
    app.state.devices = links = DeviceLinks(
        bus,
        limit=settings.max_device_links,
        heartbeat_seconds=settings.device_timeout,
        stall_seconds=settings.stall_seconds,
        coalesce_count=metrics.coalesced.labels("device").inc,
    )
    loop_watch = LoopWatch(metrics.registry)
    app.state.access = access = AccessControl(settings, metrics)
    if settings.bookings_per_client:
        access.bookings.ledger = runtime.hold_ledger() or access.bookings.ledger
        runtime.event_bus.subscribe(access.bookings.published)
    for collector in runtime.collectors():
        metrics.registry.register(collector)
    metrics.add_gauges(
        lambda: {
            **runtime.gauges(),
            "streams_open": access.streams.open_streams(),
            "device_links": len(app.state.devices),
            **loop_watch.gauges(),
        }
    )
    install_problem_handlers(app)
    install_openapi(app)
    app.include_router(banners.router)
    app.include_router(bookings.router)
    app.include_router(history.router)
    app.include_router(stream.router)
    app.include_router(events.router)
    app.include_router(health.router)
    app.include_router(metrics_route.router)
    app.include_router(legacy.router)
    endpoints = runtime.endpoints()
    if endpoints is not None:
        app.router.routes.append(RuntimeRoute(endpoints))
    app.include_router(ui.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "If-Match",
                "Last-Event-ID",
                "Cancel-Token",
            ],
            expose_headers=["ETag", "Location", "Retry-After", "Idempotent-Replayed"],
            max_age=600,
        )
    app.add_middleware(SecurityHeaders)
    if settings.submit_fast_path:
        app.fast_submit = SubmitFastPath(app, settings.max_body_bytes, cors=bool(settings.cors_origins))
    app.observer = HttpObserver(app.serve, metrics.registry)
    app.device_channel = devices.DeviceChannel(
        runtime,
        links,
        metrics,
        settings.device_timeout,
        settings.device_offline_grace,
        slot_seconds=settings.message_seconds,
    )
    return app
