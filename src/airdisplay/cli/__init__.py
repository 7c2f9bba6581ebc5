"""The `airdisplay` command line: `serve` runs the service; `keys`, `banners`, `history`, `simulate`, `dapr`
help."""

from __future__ import annotations

import click

from .. import __version__
from ._banners import banners
from ._dapr import dapr
from ._history import history
from ._keys import keys
from ._serve import serve
from ._simulate import simulate
from ._uvicorn import GC_GEN0_THRESHOLD, WS_MAX_FRAME, tune_garbage_collector, uvicorn_options


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "AIRDISPLAY"})
@click.version_option(__version__, prog_name="airdisplay")
def main() -> None:
    """AirDisplay: electronic aircraft banners as durable virtual actors."""


for command in (serve, keys, simulate, dapr, banners, history):
    main.add_command(command)

__all__ = ["GC_GEN0_THRESHOLD", "WS_MAX_FRAME", "main", "tune_garbage_collector", "uvicorn_options"]
