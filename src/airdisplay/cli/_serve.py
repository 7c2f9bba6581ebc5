"""`airdisplay serve`: the service; its options are the fields of Settings (config.py), or their variables."""

from __future__ import annotations

import contextlib
import errno
import logging
import sys
from collections.abc import Mapping

import click
import uvicorn
from pydantic import ValidationError
from uvicorn.config import STARTUP_FAILURE

from .. import tracing
from ..access import Blocklist, KeyRing, StartupKeyError, operator_notice
from ..actors import SqliteStore, StoreError, StoreInUse, StoreLock
from ..config import Settings
from ..logs import configure_logging
from ..realtime import DeviceLinks
from ..runtimes import RuntimeUnavailable
from ..runtimes.embedded import DATABASE_FILE
from ._common import (
    OneLineErrors,
    data_dir_in_use,
    invalid_value,
    option_problems,
    refuse_blank_key,
    settings_from,
    settings_options,
)
from ._common import fail as _fail
from ._connections import connection_guard
from ._uvicorn import QuietWebSockets, Server, listen, tune_garbage_collector, uvicorn_options
from ._websocket import DEVICE_LINK_LOG


@click.command(cls=OneLineErrors)
@settings_options
@click.option(
    "--api-key",
    "legacy_api_key",
    default=None,
    hidden=True,
    callback=refuse_blank_key,
    help="Older name of --operator-key.",
)
def serve(**params: object) -> None:
    """Run the AirDisplay service (embedded runtime: one process, one SQLite file)."""
    configure_logging()  # text until the options say otherwise: an error in them is a line for a person
    with contextlib.ExitStack() as held:  # the data directory's lock, for the life of the server
        try:
            settings = serve_settings(params)
            configure_logging(settings.log_format)
            if tracing.configure_tracing():
                held.callback(tracing.shutdown)  # exports the spans still buffered at exit
                logging.getLogger("airdisplay").info("tracing: on, configured by the OTEL_* variables")
            start_up_key = settings.operator_key.get_secret_value() if settings.operator_key else None
            keys = KeyRing(settings.data_dir, start_up_key, record=False)  # the app's own records the key
            settings.check_exposure(has_operator_key=keys.has_operator)
            Blocklist(settings.blocklist)  # a missing or bad file stops the start, naming the problem
            if settings.runtime == "embedded":
                # One server per data directory (actors/_lock.py). Dapr mode takes no lock: its state is in
                # Dapr's store, and the data directory holds only keys.json, which replicas may share.
                held.enter_context(StoreLock(settings.data_dir / DATABASE_FILE))
                SqliteStore(settings.data_dir / DATABASE_FILE).verify()
            else:
                from ..runtimes.dapr import check_dapr_reachable  # the Dapr SDK only when chosen

                token = settings.dapr_api_token
                check_dapr_reachable(
                    settings.dapr_url, settings.redis_url, token.get_secret_value() if token else None
                )
        except ValidationError as exc:
            _fail(option_problems(click.get_current_context(), exc))
        except StartupKeyError as exc:
            ctx = click.get_current_context()
            key_option = next(p for p in ctx.command.params if p.name == "operator_key")
            _fail(invalid_value(ctx, key_option, str(exc)))
        except StoreInUse as exc:
            advice = "stop it first, or give this server another --data-dir"
            _fail(data_dir_in_use(settings.data_dir, exc.pid, advice))
        except (ValueError, StoreError, RuntimeUnavailable) as exc:  # TracingConfigError is a ValueError
            _fail(str(exc))
        notice = operator_notice(
            keys,
            host=settings.host,
            loopback=settings.is_loopback,
            proxied=settings.forwarded_allow_ips is not None,
        )
        _serve(settings, notice=notice)


def serve_settings(params: Mapping[str, object]) -> Settings:
    """Settings from the parameters of `serve`, whose hidden `--api-key` is the older `--operator-key`."""
    options = dict(params)
    legacy = options.pop("legacy_api_key", None)
    if options["operator_key"] is None:
        options["operator_key"] = legacy
    return settings_from(options)


def limit_device_links(links: DeviceLinks, capacity: int | None) -> None:
    """Without --max-device-links, links may take nine tenths of the room the open-file limit leaves, so
    that a full fleet still leaves connections for the API and the page; logs the number."""
    if not links.limit and capacity is not None:
        links.limit = max(capacity * 9 // 10, 1)
    if links.limit:
        logging.getLogger("airdisplay").info(
            "device links: at most %s; more are closed with 1013, try again later (--max-device-links)",
            f"{links.limit:,}",
        )


def _serve(settings: Settings, *, notice: str | None) -> None:
    try:
        sockets = listen(settings.host, settings.port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            _fail(
                f"port {settings.port} on {settings.host} is already in use; stop what listens there "
                "or choose another --port"
            )
        _fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}")
    if notice is not None:  # what the operator routes need, when no operator key guards them
        logging.getLogger("airdisplay").warning("%s", notice)
    from ..api import create_app

    app = create_app(settings)
    guard = connection_guard(settings, app.state.access.metrics)  # raises the open-file limit, logs room
    limit_device_links(app.state.devices, guard.capacity)
    tune_garbage_collector()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        access_log=settings.access_log,
        log_level="info",
        # uvicorn's own handlers write text; without them its lines reach the root logger's (JSON) handler.
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        **uvicorn_options(guard),
    )
    if not settings.access_log:  # after uvicorn.Config, which sets uvicorn's loggers up
        logging.getLogger("uvicorn.error").addFilter(QuietWebSockets())
        DEVICE_LINK_LOG.setLevel(logging.WARNING)
    server = Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C: uvicorn has shut down gracefully already
        server.run(sockets=sockets)
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # what uvicorn.run does: the lifespan failed (it logged why)
