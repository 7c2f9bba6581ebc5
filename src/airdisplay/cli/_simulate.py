"""`airdisplay simulate`: a fleet of simulated banners speaking the device protocol."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..config import Settings
from ._common import fail as _fail

#: What `airdisplay serve` listens on by default.
DEFAULT_URL = f"http://{Settings.model_fields['host'].default}:{Settings.model_fields['port'].default}"
#: A server's default submit limits and message time, as the help of --api-key and --submit-rate gives them.
_LIMITS = {
    name: Settings.model_fields[name].default for name in ("submit_burst", "submit_rate", "message_seconds")
}


@click.command()
@click.option("--url", default=DEFAULT_URL, show_default=True, help="AirDisplay server URL.")
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
    envvar=list(Settings.option("operator_key").variables),
    default=None,
    help="Operator key: registers banners on a server that has keys, and its submits are not rate-limited "
    "(by default a server allows a client {submit_burst} submits, then {submit_rate:g} a minute) "
    "[env {variable}].".format(**_LIMITS, variable=Settings.option("operator_key").variables[0]),
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
    help="Messages per second to submit to random free banners, measuring delivery and ack round trip "
    "(a banner takes one message per message time, {message_seconds:g} s by default, so the fleet sustains "
    "--banners/{message_seconds:g} a second).".format(**_LIMITS),
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
    "--storm-after",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds into the run when every link drops at once, each coming back within --down-seconds "
    "(a reconnect storm); the summary says how soon each banner showed its display again.",
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
    storm_after: float | None,
    settle: float,
    report: Path | None,
) -> None:
    """Bring a fleet of simulated banners to life against a running server (SIGUSR1 drops some links).

    Prints progress on stderr and, at the end (--duration or Ctrl+C), the summary as JSON on stdout.
    Exit 2: no server at --url, a missing or refused key, or banners to re-key that are not registered
    (pass --create); exit 1: the server failed the set-up otherwise.
    """
    import asyncio
    import json

    from ..simulator import (
        Fleet,
        KeyRequired,
        ServerUnreachable,
        SetupFailed,
        SimulationConfig,
        UnknownBanners,
    )

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
        storm_after=storm_after,
        settle_seconds=settle,
    )
    try:
        summary = asyncio.run(Fleet(config).run())
    except KeyboardInterrupt:  # during set-up; once the fleet runs, Ctrl+C ends it with the summary
        return
    except (ServerUnreachable, KeyRequired, UnknownBanners) as exc:
        _fail(str(exc))
    except SetupFailed as exc:
        click.echo(f"airdisplay: error: {exc}", err=True)
        sys.exit(1)
    text = json.dumps(summary, indent=2)
    click.echo(text)
    if report is not None:
        try:
            report.write_text(text + "\n")
        except OSError as exc:
            _fail(f"cannot write the report: {exc}")
