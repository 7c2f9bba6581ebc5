"""The FastAPI application: routes, problem handlers, body limit, and the runtime's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from .. import __version__
from ..config import Settings
from ..realtime import DeviceLinks, StreamHub
from ..runtimes import BannerRuntime, EmbeddedRuntime
from ..web import STATIC_DIR
from ._access import AccessControl
from ._headers import SecurityHeaders
from ._limits import BodySizeLimit
from ._metrics import ServiceMetrics
from ._openapi import install_openapi
from ._submit import SubmitFastPath
from .problems import install_problem_handlers
from .routes import banners, devices, events, health, legacy, stream, ui
from .routes import metrics as metrics_route


def build_runtime(settings: Settings) -> BannerRuntime:
    """The runtime named in the settings."""
    if settings.runtime == "dapr":
        from ..runtimes.dapr import DaprRuntime  # imported only when chosen: it pulls in the Dapr SDK

        return DaprRuntime(
            settings.rules,
            dapr_url=settings.dapr_url,
            redis_url=settings.redis_url,
            pubsub=settings.dapr_pubsub,
            topic=settings.dapr_topic,
            dapr_api_token=settings.dapr_api_token.get_secret_value() if settings.dapr_api_token else None,
            app_api_token=settings.app_api_token.get_secret_value() if settings.app_api_token else None,
        )
    return EmbeddedRuntime(
        settings.data_dir, settings.rules, idle_timeout=settings.idle_seconds, durability=settings.durability
    )


class AirDisplayAPI(FastAPI):
    """FastAPI with the submit fast path in front of its middleware stack (api/_submit.py)."""

    fast_submit: SubmitFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_submit
        if fast is not None:
            banner_id = fast.handles(scope)
            if banner_id is not None:
                await fast(scope, receive, send, banner_id)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, runtime: BannerRuntime | None = None) -> FastAPI:
    """An AirDisplay app; it starts the runtime on startup and stops it on shutdown."""
    runtime = runtime or build_runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await bus.start()
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()
            await bus.stop()

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
    app.state.devices = DeviceLinks(bus)
    metrics = ServiceMetrics()
    app.state.access = access = AccessControl(settings, metrics)
    metrics.add_gauges(
        lambda: {
            **runtime.gauges(),
            "streams_open": access.streams.open_streams(),
            "device_links": len(app.state.devices),
        }
    )
    install_problem_handlers(app)
    install_openapi(app)
    app.include_router(banners.router)
    app.include_router(stream.router)
    app.include_router(events.router)
    app.include_router(devices.router)
    app.include_router(health.router)
    app.include_router(metrics_route.router)
    app.include_router(legacy.router)
    runtime.install(app)
    app.include_router(ui.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-Match", "Last-Event-ID"],
            expose_headers=["ETag", "Location", "Retry-After", "Idempotent-Replayed"],
            max_age=600,
        )
    app.add_middleware(SecurityHeaders)
    if settings.submit_fast_path:
        app.fast_submit = SubmitFastPath(app, settings.max_body_bytes, cors=bool(settings.cors_origins))
    return app
