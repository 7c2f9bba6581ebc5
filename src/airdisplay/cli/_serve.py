"""`airdisplay serve`: the service, with every option also read from AIRDISPLAY_* variables."""

from __future__ import annotations

import contextlib
import errno
import logging
import sys
from pathlib import Path

import click
import uvicorn
from pydantic import SecretStr, ValidationError
from pydantic_core import ErrorDetails
from uvicorn.config import STARTUP_FAILURE

from ..access import Blocklist, KeyRing, StartupKeyError, operator_notice
from ..actors import DEFAULT_IDLE_TIMEOUT, SqliteStore, StoreError, StoreInUse, StoreLock
from ..config import DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS_PER_CLIENT, Settings
from ..runtimes import RuntimeUnavailable
from ..runtimes.embedded import DATABASE_FILE
from ._common import DATA_DIR_OPTION, OneLineErrors, data_dir_in_use, invalid_value
from ._common import fail as _fail
from ._common import secret as _secret
from ._connections import connection_guard
from ._keys import refuse_blank_key
from ._uvicorn import QuietWebSockets, Server, listen, tune_garbage_collector, uvicorn_options


@click.command(cls=OneLineErrors)
@click.option(
    "--host",
    envvar="AIRDISPLAY_HOST",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on [env AIRDISPLAY_HOST].",
)
@click.option(
    "--port",
    envvar="AIRDISPLAY_PORT",
    type=int,
    default=8000,
    show_default=True,
    help="Port to listen on [env AIRDISPLAY_PORT].",
)
@DATA_DIR_OPTION
@click.option(
    "--message-seconds",
    envvar="AIRDISPLAY_MESSAGE_SECONDS",
    type=float,
    default=60.0,
    show_default=True,
    help="How long a message shows [env AIRDISPLAY_MESSAGE_SECONDS].",
)
@click.option(
    "--max-text-length",
    envvar="AIRDISPLAY_MAX_TEXT_LENGTH",
    type=int,
    default=64,
    show_default=True,
    help="Longest message a banner shows [env AIRDISPLAY_MAX_TEXT_LENGTH].",
)
@click.option(
    "--operator-key",
    envvar=["AIRDISPLAY_OPERATOR_KEY", "AIRDISPLAY_API_KEY"],
    default=None,
    callback=refuse_blank_key,
    help="An operator key for automation, besides those made with 'airdisplay keys create' "
    "[env AIRDISPLAY_OPERATOR_KEY; AIRDISPLAY_API_KEY is the older name].",
)
@click.option(
    "--api-key",
    "legacy_api_key",
    default=None,
    hidden=True,
    callback=refuse_blank_key,
    help="Older name of --operator-key.",
)
@click.option(
    "--submit-access",
    envvar="AIRDISPLAY_SUBMIT_ACCESS",
    type=click.Choice(["open", "key"]),
    default="open",
    show_default=True,
    help="open: anyone may submit messages (rate-limited); key: submitting needs a submitter key "
    "[env AIRDISPLAY_SUBMIT_ACCESS].",
)
@click.option(
    "--submit-rate",
    envvar="AIRDISPLAY_SUBMIT_RATE",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Submits per minute per client after the burst; 0 turns the limit off [env AIRDISPLAY_SUBMIT_RATE].",
)
@click.option(
    "--submit-burst",
    envvar="AIRDISPLAY_SUBMIT_BURST",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Submits a client may send at once before the rate applies [env AIRDISPLAY_SUBMIT_BURST].",
)
@click.option(
    "--rate-limit-ipv6-prefix",
    envvar="AIRDISPLAY_RATE_LIMIT_IPV6_PREFIX",
    type=click.IntRange(1, 128),
    default=64,
    show_default=True,
    help="IPv6 clients share the submit and stream limits per network of this prefix length; 128: per "
    "address (IPv4 is always per address) [env AIRDISPLAY_RATE_LIMIT_IPV6_PREFIX].",
)
@click.option(
    "--max-streams-per-client",
    envvar="AIRDISPLAY_MAX_STREAMS_PER_CLIENT",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Open WebSocket/SSE streams per client address [env AIRDISPLAY_MAX_STREAMS_PER_CLIENT].",
)
@click.option(
    "--max-connections-per-client",
    envvar="AIRDISPLAY_MAX_CONNECTIONS_PER_CLIENT",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    show_default=True,
    help="Open connections per client address, streams and device links included; raise it for a fleet "
    "behind one NAT address; 0: no limit [env AIRDISPLAY_MAX_CONNECTIONS_PER_CLIENT].",
)
@click.option(
    "--header-timeout",
    envvar="AIRDISPLAY_HEADER_TIMEOUT",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_HEADER_TIMEOUT,
    show_default=True,
    help="Seconds a connection has to send a complete request head [env AIRDISPLAY_HEADER_TIMEOUT].",
)
@click.option(
    "--blocklist",
    envvar="AIRDISPLAY_BLOCKLIST",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="File of words, phrases or re:patterns refused in messages; edits apply within a second "
    "[env AIRDISPLAY_BLOCKLIST].",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    envvar="AIRDISPLAY_CORS_ORIGINS",
    multiple=True,
    help="An origin whose pages may call the API (repeatable; none by default) "
    "[env AIRDISPLAY_CORS_ORIGINS, space-separated].",
)
@click.option(
    "--forwarded-allow-ips",
    envvar="AIRDISPLAY_FORWARDED_ALLOW_IPS",
    default=None,
    help="Proxies trusted to set X-Forwarded-For, so limits apply per real client "
    "[env AIRDISPLAY_FORWARDED_ALLOW_IPS].",
)
@click.option(
    "--idle-seconds",
    envvar="AIRDISPLAY_IDLE_SECONDS",
    type=float,
    default=DEFAULT_IDLE_TIMEOUT,
    show_default=True,
    help="Idle time before a banner actor leaves memory [env AIRDISPLAY_IDLE_SECONDS].",
)
@click.option(
    "--durability",
    envvar="AIRDISPLAY_DURABILITY",
    type=click.Choice(["full", "normal"]),
    default="full",
    show_default=True,
    help="SQLite sync: full survives power loss, normal survives crashes [env AIRDISPLAY_DURABILITY].",
)
@click.option(
    "--device-timeout",
    envvar="AIRDISPLAY_DEVICE_TIMEOUT",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds without a heartbeat before a banner counts as offline [env AIRDISPLAY_DEVICE_TIMEOUT].",
)
@click.option(
    "--offline-policy",
    envvar="AIRDISPLAY_OFFLINE_POLICY",
    type=click.Choice(["accept", "refuse"]),
    default="accept",
    show_default=True,
    help="Messages for offline banners: accept (delivered on reconnect) or refuse with 503 "
    "[env AIRDISPLAY_OFFLINE_POLICY].",
)
@click.option(
    "--runtime",
    envvar="AIRDISPLAY_RUNTIME",
    type=click.Choice(["embedded", "dapr"]),
    default="embedded",
    show_default=True,
    help="embedded: one process with SQLite; dapr: banner actors on daprd [env AIRDISPLAY_RUNTIME].",
)
@click.option(
    "--dapr-http-port",
    envvar="DAPR_HTTP_PORT",
    type=click.IntRange(1, 65535),
    default=3500,
    show_default=True,
    help="Dapr mode: daprd's HTTP port [env DAPR_HTTP_PORT].",
)
@click.option(
    "--redis-url",
    envvar="AIRDISPLAY_REDIS_URL",
    default="redis://127.0.0.1:6379/0",
    show_default=True,
    help="Dapr mode: Redis for the fleet directory [env AIRDISPLAY_REDIS_URL].",
)
@click.option(
    "--dapr-pubsub",
    envvar="AIRDISPLAY_DAPR_PUBSUB",
    default="pubsub",
    show_default=True,
    help="Dapr mode: pub/sub component name [env AIRDISPLAY_DAPR_PUBSUB].",
)
@click.option(
    "--dapr-topic",
    envvar="AIRDISPLAY_DAPR_TOPIC",
    default="banner-changes",
    show_default=True,
    help="Dapr mode: topic of banner events [env AIRDISPLAY_DAPR_TOPIC].",
)
@click.option(
    "--submit-fast-path/--no-submit-fast-path",
    envvar="AIRDISPLAY_SUBMIT_FAST_PATH",
    default=True,
    hidden=True,
    help="Serve well-formed submits in front of the middleware stack (for benchmarks: api/_submit.py).",
)
@click.option(
    "--access-log/--no-access-log",
    envvar="AIRDISPLAY_ACCESS_LOG",
    default=False,
    show_default=True,
    help="Log every request and WebSocket connection [env AIRDISPLAY_ACCESS_LOG].",
)
def serve(
    host: str,
    port: int,
    data_dir: Path,
    message_seconds: float,
    max_text_length: int,
    operator_key: str | None,
    legacy_api_key: str | None,
    submit_access: str,
    submit_rate: float,
    submit_burst: int,
    rate_limit_ipv6_prefix: int,
    max_streams_per_client: int,
    max_connections_per_client: int,
    header_timeout: float,
    blocklist: Path | None,
    cors_origins: tuple[str, ...],
    forwarded_allow_ips: str | None,
    idle_seconds: float,
    durability: str,
    device_timeout: float,
    offline_policy: str,
    runtime: str,
    dapr_http_port: int,
    redis_url: str,
    dapr_pubsub: str,
    dapr_topic: str,
    submit_fast_path: bool,
    access_log: bool,
) -> None:
    """Run the AirDisplay service (embedded runtime: one process, one SQLite file)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per call to daprd otherwise
    with contextlib.ExitStack() as held:  # the data directory's lock, for the life of the server
        try:
            settings = Settings(
                host=host,
                port=port,
                data_dir=data_dir,
                message_seconds=message_seconds,
                max_text_length=max_text_length,
                operator_key=SecretStr(key) if (key := operator_key or legacy_api_key) else None,
                submit_access=submit_access,
                submit_rate=submit_rate,
                submit_burst=submit_burst,
                rate_limit_ipv6_prefix=rate_limit_ipv6_prefix,
                max_streams_per_client=max_streams_per_client,
                max_connections_per_client=max_connections_per_client,
                header_timeout=header_timeout,
                blocklist=blocklist,
                cors_origins=cors_origins,
                forwarded_allow_ips=forwarded_allow_ips,
                idle_seconds=idle_seconds,
                durability=durability,
                device_timeout=device_timeout,
                offline_policy=offline_policy,
                runtime=runtime,
                dapr_url=f"http://127.0.0.1:{dapr_http_port}",
                redis_url=redis_url,
                dapr_pubsub=dapr_pubsub,
                dapr_topic=dapr_topic,
                submit_fast_path=submit_fast_path,
                dapr_api_token=_secret("DAPR_API_TOKEN"),
                app_api_token=_secret("APP_API_TOKEN"),
            )
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
            _fail("; ".join(_option_problem(click.get_current_context(), e) for e in exc.errors()))
        except StartupKeyError as exc:
            ctx = click.get_current_context()
            key_option = next(p for p in ctx.command.params if p.name == "operator_key")
            _fail(invalid_value(ctx, key_option, str(exc)))
        except StoreInUse as exc:
            _fail(data_dir_in_use(data_dir, exc.pid, "stop it first, or give this server another --data-dir"))
        except (ValueError, StoreError, RuntimeUnavailable) as exc:
            _fail(str(exc))
        notice = operator_notice(
            keys, host=settings.host, loopback=settings.is_loopback, proxied=forwarded_allow_ips is not None
        )
        _serve(settings, notice=notice, access_log=access_log, forwarded=forwarded_allow_ips)


def _serve(settings: Settings, *, notice: str | None, access_log: bool, forwarded: str | None) -> None:
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
    tune_garbage_collector()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        access_log=access_log,
        log_level="info",
        proxy_headers=forwarded is not None,
        forwarded_allow_ips=forwarded,
        **uvicorn_options(guard),
    )
    if not access_log:  # after uvicorn.Config, which sets uvicorn's loggers up
        logging.getLogger("uvicorn.error").addFilter(QuietWebSockets())
    server = Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C: uvicorn has shut down gracefully already
        server.run(sockets=sockets)
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # what uvicorn.run does: the lifespan failed (it logged why)


#: Settings fields set from an option of another name.
FIELD_OPTIONS = {"dapr_url": "dapr_http_port"}


def _option_problem(ctx: click.Context, error: ErrorDetails) -> str:
    """A Settings validation error, named by the option the user gave (not the Settings field)."""
    field = str(error["loc"][0]) if error["loc"] else ""
    name = FIELD_OPTIONS.get(field, field)
    param = next((p for p in ctx.command.params if p.name == name), None)
    if param is None:
        return f"{field}: {error['msg']}"
    return invalid_value(ctx, param, f"{error['msg'][:1].lower()}{error['msg'][1:]} (got {error['input']!r})")
