"""What the commands share: a clear error line and exit code 2, secrets from the environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from click.core import ParameterSource
from pydantic import SecretStr


def secret(variable: str) -> SecretStr | None:
    value = os.environ.get(variable)
    return SecretStr(value) if value else None


def fail(message: str) -> NoReturn:
    click.echo(f"airdisplay: error: {message}", err=True)
    sys.exit(2)


class OneLineErrors(click.Command):
    """A command whose bad or unknown options stop it with one error line and exit 2, like its other errors.

    Click's own report is four lines (usage, hint, blank, error); the README promises one line for every
    start-up failure, and an operator's log or a service manager shows the last line only.
    """

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            missing = isinstance(exc, click.MissingParameter)  # a BadParameter without a value to name
            if isinstance(exc, click.BadParameter) and not missing and exc.ctx and exc.param:
                fail(invalid_value(exc.ctx, exc.param, exc.message))
            command = f"{parent.command_path} {info_name}" if parent else info_name or self.name
            fail(f"{exc.format_message()} (see '{command} --help')")


def invalid_value(ctx: click.Context, param: click.Parameter, problem: str) -> str:
    """The error line for a bad value of `param`, worded like Click's, naming the variable it came from."""
    return f"Invalid value for {param.get_error_hint(ctx)}{from_variable(ctx, param)}: {problem}"


def from_variable(ctx: click.Context, param: click.Parameter) -> str:
    """' (from VARIABLE)' when the option's value came from the environment: where the user should look."""
    if param.name is None or ctx.get_parameter_source(param.name) is not ParameterSource.ENVIRONMENT:
        return ""
    names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
    variable = next((n for n in names if os.environ.get(n)), None)
    return f" (from {variable})" if variable else ""


DATA_DIR_OPTION = click.option(
    "--data-dir",
    envvar="AIRDISPLAY_DATA_DIR",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("./data"),
    show_default=True,
    help="The server's data directory: the SQLite database, keys.json [env AIRDISPLAY_DATA_DIR].",
)


def data_dir_in_use(data_dir: Path, pid: int | None, advice: str) -> str:
    """The error line for a data directory whose store another airdisplay process holds."""
    holder = f"pid {pid}" if pid is not None else "pid unknown"
    return f"data directory {data_dir} is in use by another airdisplay process ({holder}); {advice}"
