"""What the commands share: a clear error line and exit code 2, secrets from the environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import click
from pydantic import SecretStr


def secret(variable: str) -> SecretStr | None:
    value = os.environ.get(variable)
    return SecretStr(value) if value else None


def fail(message: str) -> NoReturn:
    click.echo(f"airdisplay: error: {message}", err=True)
    sys.exit(2)


DATABASE_DIR_OPTION = click.option(
    "--data-dir",
    envvar="AIRDISPLAY_DATA_DIR",
    type=click.Path(path_type=Path),
    default=Path("./data"),
    show_default=True,
    help="Directory of the SQLite database [env AIRDISPLAY_DATA_DIR].",
)
DATA_DIR_OPTION = click.option(
    "--data-dir",
    envvar="AIRDISPLAY_DATA_DIR",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("./data"),
    show_default=True,
    help="The server's data directory, which holds keys.json [env AIRDISPLAY_DATA_DIR].",
)
