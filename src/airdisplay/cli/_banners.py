"""`airdisplay banners import`: onboard a fleet from a CSV file."""

from __future__ import annotations

from pathlib import Path

import click

from ..actors import StoreError, StoreInUse
from ._common import DATA_DIR_OPTION, OneLineErrors, data_dir_in_use
from ._common import fail as _fail


@click.group()
def banners() -> None:
    """Fleet administration."""


@banners.command("import", cls=OneLineErrors)
@click.argument("source", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@DATA_DIR_OPTION
@click.option(
    "--tokens-out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write each banner's device token here (CSV, mode 0600); without it no tokens are issued.",
)
def import_banners(source: Path, data_dir: Path, tokens_out: Path | None) -> None:
    """Register the banners of a CSV file (header `id,name`), all of them or none."""
    from ..onboarding import FleetFileError, import_fleet

    def progress(count: int) -> None:
        click.echo(f"  {count:,} banners checked and written ...", err=True)

    try:
        result = import_fleet(data_dir, source, tokens_out=tokens_out, progress=progress)
    except FleetFileError as exc:
        _fail(f"{source}: {exc}; nothing was imported")
    except StoreInUse as exc:
        _fail(data_dir_in_use(data_dir, exc.pid, "stop it before importing; nothing was imported"))
    except StoreError as exc:
        _fail(str(exc))
    rate = result.banners / result.seconds if result.seconds else 0
    click.echo(f"imported {result.banners:,} banners in {result.seconds:.1f} s ({rate:,.0f}/s)")
