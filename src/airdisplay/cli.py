"""The `airdisplay` command line: `airdisplay serve` runs the service."""

from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
import uvicorn
from pydantic import SecretStr, ValidationError

from . import __version__
from .access import Blocklist, KeyRing, KeysFile, Role, UnknownKey
from .actors import SqliteStore, StoreError
from .config import Settings
from .runtimes.embedded import DATABASE_FILE

#: Largest WebSocket frame a client may send: a subscribe frame for 1,000 ids of 64 characters fits.
WS_MAX_FRAME = 256 * 1024
#: In-flight requests get this long to finish on SIGTERM/Ctrl+C before streams are cut.
SHUTDOWN_GRACE_SECONDS = 5


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "AIRDISPLAY"})
@click.version_option(__version__, prog_name="airdisplay")
def main() -> None:
    """AirDisplay: electronic aircraft banners as durable virtual actors."""


@main.command()
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
@click.option(
    "--data-dir",
    envvar="AIRDISPLAY_DATA_DIR",
    type=click.Path(path_type=Path),
    default=Path("./data"),
    show_default=True,
    help="Directory of the SQLite database [env AIRDISPLAY_DATA_DIR].",
)
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
    default=60.0,
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
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    except (ValueError, StoreError) as exc:
        _fail(str(exc))
    if not keys.has_operator:
        logging.getLogger("airdisplay").warning(
            "no operator key: operator routes are open to anyone on this machine (listening on %s only); "
            "create one with 'airdisplay keys create --role operator'",
            host,
        )
    from .api import create_app

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


def _secret(variable: str) -> SecretStr | None:
    value = os.environ.get(variable)
    return SecretStr(value) if value else None


def _fail(message: str) -> None:
    click.echo(f"airdisplay: error: {message}", err=True)
    sys.exit(2)


_DATA_DIR_OPTION = click.option(
    "--data-dir",
    envvar="AIRDISPLAY_DATA_DIR",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("./data"),
    show_default=True,
    help="The server's data directory, which holds keys.json [env AIRDISPLAY_DATA_DIR].",
)


@main.group()
def keys() -> None:
    """API keys: create, list and revoke (a running server picks changes up within a second)."""


@keys.command("create")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    required=True,
    help="operator: everything; submitter: submit messages when submitting needs a key.",
)
@click.option("--label", default="", help="A note saying whose key it is.")
@_DATA_DIR_OPTION
def keys_create(role: str, label: str, data_dir: Path) -> None:
    """Create a key and print it once: only its hash is stored."""
    try:
        record, key = KeysFile(data_dir).create(Role(role), label)
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    click.echo(key)
    click.echo(f"created {record.role.value} key {record.id}; it is shown only now, keep it secret", err=True)


@keys.command("list")
@_DATA_DIR_OPTION
def keys_list(data_dir: Path) -> None:
    """List the keys (ids, roles, labels; never secrets)."""
    try:
        records = KeysFile(data_dir).load()
    except ValueError as exc:
        _fail(str(exc))
    for record in records:
        click.echo(f"{record.id}  {record.role.value:<9}  {record.created_at}  {record.label}")


@keys.command("revoke")
@click.argument("key_id")
@_DATA_DIR_OPTION
def keys_revoke(key_id: str, data_dir: Path) -> None:
    """Revoke a key by its id; a running server refuses it within a second."""
    try:
        record = KeysFile(data_dir).revoke(key_id)
    except (UnknownKey, ValueError, OSError) as exc:
        _fail(str(exc))
    click.echo(f"revoked {record.role.value} key {record.id}", err=True)


@main.command()
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="AirDisplay server URL.")
@click.option(
    "--banners",
    type=click.IntRange(1, 1_000_000),
    default=100,
    show_default=True,
    help="How many banners to simulate.",
)
@click.option("--prefix", default="sim-", show_default=True, help="Id prefix of the simulated banners.")
@click.option(
    "--create/--no-create",
    default=False,
    show_default=True,
    help="Register missing banners (otherwise their device tokens are rotated).",
)
@click.option(
    "--api-key",
    envvar=["AIRDISPLAY_OPERATOR_KEY", "AIRDISPLAY_API_KEY"],
    default=None,
    help="Operator key: registers banners on a server that has keys, and its submits are not rate-limited "
    "[env AIRDISPLAY_OPERATOR_KEY].",
)
@click.option(
    "--ack-delay",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds a banner takes to show a display before acknowledging it.",
)
@click.option(
    "--duration", type=float, default=None, help="Stop after this many seconds (default: run until Ctrl+C)."
)
@click.option(
    "--submit-rate",
    type=float,
    default=0.0,
    show_default=True,
    help="Messages per second to submit to random free banners, measuring delivery and ack round trip.",
)
@click.option("--connect-rate", type=float, default=500.0, show_default=True, help="New links per second.")
@click.option("--drop-every", type=float, default=None, help="Every N seconds drop a fraction of the links.")
@click.option(
    "--drop-fraction", type=float, default=0.1, show_default=True, help="Fraction of links to drop."
)
@click.option(
    "--down-seconds", type=float, default=5.0, show_default=True, help="How long dropped links stay down."
)
@click.option(
    "--settle",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds to wait after all links connect before submitting (lets the connect wave drain).",
)
@click.option(
    "--report", type=click.Path(path_type=Path), default=None, help="Write the final summary as JSON here."
)
def simulate(
    url: str,
    banners: int,
    prefix: str,
    create: bool,
    api_key: str | None,
    ack_delay: float,
    duration: float | None,
    submit_rate: float,
    connect_rate: float,
    drop_every: float | None,
    drop_fraction: float,
    down_seconds: float,
    settle: float,
    report: Path | None,
) -> None:
    """Bring a fleet of simulated banners to life against a running server (SIGUSR1 drops some links)."""
    import asyncio
    import json

    from .simulator import Fleet, SimulationConfig

    config = SimulationConfig(
        url=url,
        banners=banners,
        prefix=prefix,
        create=create,
        api_key=api_key,
        ack_delay=ack_delay,
        duration=duration,
        submit_rate=submit_rate,
        connect_rate=connect_rate,
        drop_every=drop_every,
        drop_fraction=drop_fraction,
        down_seconds=down_seconds,
        settle_seconds=settle,
    )
    try:
        summary = asyncio.run(Fleet(config).run())
    except KeyboardInterrupt:
        return
    except (RuntimeError, OSError) as exc:
        _fail(str(exc))
    text = json.dumps(summary, indent=2)
    click.echo(text)
    if report is not None:
        report.write_text(text + "\n")


@main.group()
def dapr() -> None:
    """Tools for running AirDisplay on Dapr."""


@dapr.command("check")
@click.option(
    "--resources-path",
    type=click.Path(path_type=Path),
    default=Path("deploy/dapr/components"),
    show_default=True,
    help="Directory of Dapr component files.",
)
@click.option(
    "--run-file",
    type=click.Path(path_type=Path),
    default=None,
    help="A `dapr run -f` file to check too (default: deploy/dapr/dapr.yaml when it exists).",
)
@click.option(
    "--port",
    envvar="AIRDISPLAY_PORT",
    type=int,
    default=8000,
    show_default=True,
    help="The port AirDisplay serves on [env AIRDISPLAY_PORT].",
)
@click.option(
    "--app-port",
    envvar="APP_PORT",
    type=int,
    default=None,
    help="The port daprd calls the app on (daprd --app-port) [env APP_PORT].",
)
@click.option(
    "--pubsub",
    envvar="AIRDISPLAY_DAPR_PUBSUB",
    default="pubsub",
    show_default=True,
    help="Pub/sub component name [env AIRDISPLAY_DAPR_PUBSUB].",
)
def dapr_check(
    resources_path: Path, run_file: Path | None, port: int, app_port: int | None, pubsub: str
) -> None:
    """Validate the Dapr components and settings before daprd starts; exits 1 on any error."""
    from .runtimes.dapr._check import Expectations, check_dapr_setup

    if (
        run_file is None
        and Path("deploy/dapr/dapr.yaml").exists()
        and resources_path == Path("deploy/dapr/components")
    ):
        run_file = Path("deploy/dapr/dapr.yaml")
    expect = Expectations(
        pubsub=pubsub, app_port=port, dapr_app_port=app_port, dapr_http_port=os.environ.get("DAPR_HTTP_PORT")
    )
    findings = check_dapr_setup(resources_path, expect, run_file)
    for finding in findings:
        click.echo(str(finding), err=finding.level == "error")
    errors = sum(1 for f in findings if f.level == "error")
    checked = f"{resources_path}" + (f" and {run_file}" if run_file else "")
    if errors:
        click.echo(f"dapr check: {errors} error(s) in {checked}", err=True)
        sys.exit(1)
    click.echo(f"dapr check: {checked} look right ({len(findings)} warning(s))")


@main.group()
def banners() -> None:
    """Fleet administration."""


@banners.command("import")
@click.argument("source", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "--data-dir",
    envvar="AIRDISPLAY_DATA_DIR",
    type=click.Path(path_type=Path),
    default=Path("./data"),
    show_default=True,
    help="Directory of the SQLite database [env AIRDISPLAY_DATA_DIR].",
)
@click.option(
    "--tokens-out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write each banner's device token here (CSV, mode 0600); without it no tokens are issued.",
)
def import_banners(source: Path, data_dir: Path, tokens_out: Path | None) -> None:
    """Register the banners of a CSV file (header `id,name`), all of them or none."""
    from .onboarding import FleetFileError, import_fleet

    def progress(count: int) -> None:
        click.echo(f"  {count:,} banners checked and written ...", err=True)

    try:
        result = import_fleet(data_dir, source, tokens_out=tokens_out, progress=progress)
    except FleetFileError as exc:
        _fail(f"{source}: {exc}; nothing was imported")
    except StoreError as exc:
        _fail(str(exc))
    rate = result.banners / result.seconds if result.seconds else 0
    click.echo(f"imported {result.banners:,} banners in {result.seconds:.1f} s ({rate:,.0f}/s)")
