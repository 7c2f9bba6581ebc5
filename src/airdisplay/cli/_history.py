"""`airdisplay history export`: what the fleet showed in a time range, as CSV, from a running server.

It pages through `GET /api/v1/history` (an operator route), so it works the same on one machine and on a
Dapr fleet, and never opens the database behind a running server.
"""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime
from typing import IO, Any

import click
import httpx

from ..config import Settings
from ._common import fail as _fail
from ._simulate import DEFAULT_URL

#: Entries per request: the route's most.
PAGE = 1000
COLUMNS = (
    "banner_id",
    "message_id",
    "text",
    "by",
    "requested_at",
    "shown_at",
    "ended_at",
    "ended",
    "acked_at",
    "slot_start",
)


@click.group()
def history() -> None:
    """What banners showed: export it (the API serves it too: docs in the README)."""


def _when(value: str) -> str:
    try:
        if "T" not in value.upper():
            raise ValueError(value)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date and time such as 2026-11-30T14:00:00Z") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


@history.command("export")
@click.option("--url", default=DEFAULT_URL, show_default=True, help="AirDisplay server URL.")
@click.option("--since", required=True, help="From this time (ISO 8601, e.g. 2026-11-01T00:00:00Z).")
@click.option("--until", default=None, help="Until this time, not included (default: now).")
@click.option(
    "--api-key",
    envvar=list(Settings.option("operator_key").variables),
    default=None,
    help=f"Operator key (the route is an operator's) [env {Settings.option('operator_key').variables[0]}].",
)
@click.option(
    "--output", "-o", type=click.File("w", encoding="utf-8"), default="-", help="CSV file (default: stdout)."
)
def export(url: str, since: str, until: str | None, api_key: str | None, output: IO[str]) -> None:
    """Write what every banner showed from --since until --until as CSV (a header line first), oldest
    first; progress goes to stderr. Exit 2 when the server cannot be reached or refuses the key."""
    params: dict[str, Any] = {"since": _when(since), "limit": PAGE}
    if until is not None:
        params["until"] = _when(until)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    writer = csv.writer(output)
    writer.writerow(COLUMNS)
    written = 0
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        while True:
            try:
                response = client.get("/api/v1/history", params=params)
            except httpx.HTTPError as exc:
                _fail(f"cannot reach the server at {url}: {exc}")
            if response.status_code != 200:
                _fail(f"the server answered {response.status_code}: {_detail(response)}")
            page = response.json()
            for entry in page["items"]:
                writer.writerow(["" if entry.get(c) is None else entry[c] for c in COLUMNS])
            written += len(page["items"])
            click.echo(f"\r{written:,} entries", nl=False, err=True)
            if page["next"] is None:
                break
            params["after"] = page["next"]
    output.flush()
    click.echo(f"\r{written:,} entries exported", err=True)
    if output is not sys.stdout:
        output.close()


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:200]
