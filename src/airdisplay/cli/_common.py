"""What the commands share: options made from Settings, a clear error line and exit code 2."""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar, Union, get_args, get_origin

import click
from annotated_types import Ge, Gt, Le, Lt
from click.core import ParameterSource
from pydantic import SecretStr, ValidationError
from pydantic_core import ErrorDetails

from ..config import Settings

F = TypeVar("F", bound=Callable[..., Any])


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


def refuse_blank_key(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback of a key option: a blank key, given or in the option's variable, stops the start.

    A variable set to nothing is most often a secret that did not arrive (an empty interpolation in a
    compose file); Click would treat it as unset and start the server without the key.
    """
    if value is not None and not value.strip():
        raise click.BadParameter("the key is blank; give a key, or leave the option out to run without one")
    names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
    blank = next((n for n in names if n in os.environ and not os.environ[n].strip()), None)
    if value is None and blank is not None:
        raise click.BadParameter(f"{blank} is set but blank; give a key, or unset it to run without one")
    return value


class FieldOption(click.Option):
    """The option of a Settings field: its help shows the field's limits, which Settings checks (Click only
    parses the text), so that their messages are written once."""

    def __init__(self, *args: Any, limits: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits

    def get_help_extra(self, ctx: click.Context) -> click.types.OptionHelpExtra:
        extra = super().get_help_extra(ctx)
        if self.limits:
            extra["range"] = self.limits
        return extra


def settings_option(name: str, *flags: str, help: str | None = None) -> Callable[[F], F]:
    """The Click option of Settings field `name`: its flag, variables, default, type and help from the field.

    `flags` and `help` respell it for a command where it means something narrower (`dapr check --pubsub`);
    the value still lands in the parameter `name`.
    """
    field = Settings.model_fields[name]
    option = Settings.option(name)
    if not option.command_line:
        raise ValueError(f"{name} is read from {option.variables[0]} only, never from the command line")
    kind = _without_none(field.annotation)
    default = field.get_default(call_default_factory=True)
    flag = flags[0] if flags else option.flag
    extra: dict[str, Any] = {}
    if kind is bool:
        declarations = [f"{flag}/--no-{flag.removeprefix('--')}", *flags[1:]]
    else:
        declarations = [flag, *flags[1:]]
        extra["type"] = _click_type(kind, option.path)
    if get_origin(kind) is tuple:
        extra["multiple"] = True
    if kind is SecretStr:
        extra["callback"] = refuse_blank_key
    variables = option.variables
    where = variables[0] + (", space-separated" if get_origin(kind) is tuple else "")
    where += "".join(f"; {older} is the older name" for older in variables[1:])
    return click.option(
        *declarations,
        name,
        cls=FieldOption,
        limits=_limits(field.metadata),
        envvar=list(variables) if len(variables) > 1 else variables[0],
        default=default,
        show_default=default not in (None, ()),
        hidden=option.hidden,
        help=f"{help or field.description} [env {where}].",
        **extra,
    )


def settings_options(command: F) -> F:
    """Decorate `command` with every command-line option of Settings, in the order of its fields."""
    for name in reversed(Settings.model_fields):  # Click lists options in the reverse order of decorators
        if Settings.option(name).command_line:
            command = settings_option(name)(command)
    return command


def settings_from(values: Mapping[str, object]) -> Settings:
    """Settings from the option values Click gathered (command line, else variable, else the field's default)
    and the secrets read only from their variables (an empty one counts as unset)."""
    secrets = {}
    for name in Settings.model_fields:
        option = Settings.option(name)
        found = [os.environ[v] for v in option.variables if os.environ.get(v)]
        if not option.command_line and found:
            secrets[name] = found[0]
    return Settings.model_validate({**secrets, **values})


def option_problems(ctx: click.Context, error: ValidationError) -> str:
    """Settings' validation errors as one line, each named by its option and where its value came from."""
    return "; ".join(_option_problem(ctx, e) for e in error.errors())


def _option_problem(ctx: click.Context, error: ErrorDetails) -> str:
    name = str(error["loc"][0]) if error["loc"] else ""
    problem = f"{error['msg'][:1].lower()}{error['msg'][1:]}"
    field = Settings.model_fields.get(name)
    if field is not None and _without_none(field.annotation) is not SecretStr:  # a secret is never echoed
        problem += f" (got {error['input']!r})"
    param = next((p for p in ctx.command.params if p.name == name), None)
    if param is not None:
        return invalid_value(ctx, param, problem)
    if field is not None:
        return f"Invalid value for {Settings.option(name).variables[0]}: {problem}"
    return f"{name}: {problem}"


def _limits(constraints: Iterable[object]) -> str:
    """A field's bounds written as Click writes a range's: `x>=0`, `x>0`, `1<=x<=128`."""
    low: object = None
    high: object = None
    low_open = high_open = False
    for constraint in constraints:
        if isinstance(constraint, Ge):
            low = constraint.ge
        elif isinstance(constraint, Gt):
            low, low_open = constraint.gt, True
        elif isinstance(constraint, Le):
            high = constraint.le
        elif isinstance(constraint, Lt):
            high, high_open = constraint.lt, True
    below = "<" if high_open else "<="
    if low is not None and high is not None:
        return f"{low}{'<' if low_open else '<='}x{below}{high}"
    if low is not None:
        return f"x{'>' if low_open else '>='}{low}"
    return f"x{below}{high}" if high is not None else ""


def _without_none(annotation: Any) -> Any:
    """`X` of `X | None`."""
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = [a for a in get_args(annotation) if a is not type(None)]
        if len(kinds) == 1:
            return kinds[0]
    return annotation


def _click_type(kind: Any, path: Literal["file", "directory"] | None) -> click.ParamType[Any, Any]:
    if get_origin(kind) is Literal:
        return click.Choice([str(choice) for choice in get_args(kind)])
    if get_origin(kind) is tuple:
        return _click_type(get_args(kind)[0], path)
    if kind is Path:
        return click.Path(path_type=Path, file_okay=path != "directory", dir_okay=path != "file")
    scalars: dict[Any, click.ParamType[Any, Any]] = {int: click.INT, float: click.FLOAT, str: click.STRING}
    if kind in scalars or kind is SecretStr:
        return scalars.get(kind, click.STRING)
    raise TypeError(f"no command-line type for a setting of type {kind!r}")


DATA_DIR_OPTION = settings_option("data_dir")


def data_dir_in_use(data_dir: Path, pid: int | None, advice: str) -> str:
    """The error line for a data directory whose store another airdisplay process holds."""
    holder = f"pid {pid}" if pid is not None else "pid unknown"
    return f"data directory {data_dir} is in use by another airdisplay process ({holder}); {advice}"
