"""`airdisplay serve`: the service, with every option also read from AIRDISPLAY_* variables."""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

import click
import uvicorn
from pydantic import SecretStr, ValidationError

from ..access import Blocklist, KeyRing
from ..actors import DEFAULT_IDLE_TIMEOUT, SqliteStore, StoreError
from ..config import Settings
from ..runtimes import RuntimeUnavailable
from ..runtimes.embedded import DATABASE_FILE
from ._common import DATABASE_DIR_OPTION
from ._common import fail as _fail
from ._common import secret as _secret

#: Largest WebSocket frame a client may send: a subscribe frame for 1,000 ids of 64 characters fits.
WS_MAX_FRAME = 256 * 1024
#: In-flight requests get this long to finish on SIGTERM/Ctrl+C before streams are cut.
SHUTDOWN_GRACE_SECONDS = 5


@click.command()
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
@DATABASE_DIR_OPTION
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
    help="An operator key for automation, besides those made with 'airdisplay keys create' "
    "[env AIRDISPLAY_OPERATOR_KEY; AIRDISPLAY_API_KEY is the older name].",
)
@click.option("--api-key", "legacy_api_key", default=None, hidden=True, help="Older name of --operator-key.")
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
    "--max-streams-per-client",
    envvar="AIRDISPLAY_MAX_STREAMS_PER_CLIENT",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Open WebSocket/SSE streams per client address [env AIRDISPLAY_MAX_STREAMS_PER_CLIENT].",
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
    type=int,
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
    "--access-log/--no-access-log",
    envvar="AIRDISPLAY_ACCESS_LOG",
    default=False,
    show_default=True,
    help="Log every request [env AIRDISPLAY_ACCESS_LOG].",
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
    max_streams_per_client: int,
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
    access_log: bool,
) -> None:
    """Run the AirDisplay service (embedded runtime: one process, one SQLite file)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per call to daprd otherwise
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
            max_streams_per_client=max_streams_per_client,
            blocklist=blocklist,
            cors_origins=cors_origins,
            idle_seconds=idle_seconds,
            durability=durability,
            device_timeout=device_timeout,
            offline_policy=offline_policy,
            runtime=runtime,
            dapr_url=f"http://127.0.0.1:{dapr_http_port}",
            redis_url=redis_url,
            dapr_pubsub=dapr_pubsub,
            dapr_topic=dapr_topic,
            dapr_api_token=_secret("DAPR_API_TOKEN"),
            app_api_token=_secret("APP_API_TOKEN"),
        )
        keys = KeyRing(settings.data_dir, key)
        settings.check_exposure(has_operator_key=keys.has_operator)
        Blocklist(settings.blocklist)  # a missing or bad file stops the start, naming the problem
        if settings.runtime == "embedded":
            SqliteStore(settings.data_dir / DATABASE_FILE).verify()
        else:
            from ..runtimes.dapr import check_dapr_reachable  # the Dapr SDK only when chosen

            token = settings.dapr_api_token
            check_dapr_reachable(
                settings.dapr_url, settings.redis_url, token.get_secret_value() if token else None
            )
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    except (ValueError, StoreError, RuntimeUnavailable) as exc:
        _fail(str(exc))
    if not keys.has_operator:
        logging.getLogger("airdisplay").warning(
            "no operator key: operator routes are open to anyone on this machine (listening on %s only); "
            "create one with 'airdisplay keys create --role operator'",
            host,
        )
    from ..api import create_app

    app = create_app(settings)
    tune_garbage_collector()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        access_log=access_log,
        log_level="info",
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        **uvicorn_options(),
    )


#: Young-generation threshold. Each active banner actor holds a dozen tracked objects; with Python's default
#: (700) the collector ran a full pass every second under load, about 10% of the CPU (bench/submit_vs_bare.py
#: profile), and with 10,000 banner links full passes took up to 860 ms (p99 delivery 1.8 s, vs 0.9 s with
#: this threshold; bench/devices.py).
GC_GEN0_THRESHOLD = 50_000


def uvicorn_options() -> dict[str, Any]:
    """How the server runs its WebSockets and shuts down (also used by the tests' servers)."""
    return {
        "ws": "websockets-sansio",  # 10% less memory per connection than the legacy impl (bench/devices.py)
        # permessage-deflate keeps a zlib state per connection: 843 MB vs 354 MB RSS for 5,000 banner
        # links (bench/devices.py); our frames are small, and compressing them costs more than it saves.
        "ws_per_message_deflate": False,
        "ws_max_size": WS_MAX_FRAME,
        # Open SSE streams would otherwise hold a graceful shutdown forever.
        "timeout_graceful_shutdown": SHUTDOWN_GRACE_SECONDS,
    }


def tune_garbage_collector() -> None:
    """Move start-up objects out of the collector's way and collect less often (see GC_GEN0_THRESHOLD)."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
