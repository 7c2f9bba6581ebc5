"""Settings is the one declaration of the server's options: `airdisplay serve` makes its options from its
fields (cli/_common.py), with their defaults, variables and limits, and names the option in every error."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError

from airdisplay.cli import main
from airdisplay.cli._common import option_problems
from airdisplay.cli._serve import serve, serve_settings
from airdisplay.config import Settings

#: For every field: a variable's text and the value it gives, which is not the default (so each row can fail).
SAMPLES: dict[str, tuple[str, object]] = {
    "host": ("0.0.0.0", "0.0.0.0"),
    "port": ("9001", 9001),
    "data_dir": ("elsewhere", Path("elsewhere")),
    "message_seconds": ("42", 42.0),
    "max_text_length": ("100", 100),
    "operator_key": ("k" * 64, SecretStr("k" * 64)),
    "submit_access": ("key", "key"),
    "submit_rate": ("5", 5.0),
    "submit_burst": ("3", 3),
    "bookings_per_client": ("2", 2),
    "queue_length": ("3", 3),
    "history_days": ("30", 30.0),
    "rate_limit_ipv6_prefix": ("48", 48),
    "max_streams_per_client": ("7", 7),
    "max_connections_per_client": ("0", 0),
    "max_device_links": ("20000", 20000),
    "header_timeout": ("2.5", 2.5),
    "blocklist": ("words.txt", Path("words.txt")),
    "cors_origins": ("https://a.example https://b.example", ("https://a.example", "https://b.example")),
    "forwarded_allow_ips": ("10.0.0.1", "10.0.0.1"),
    "idle_seconds": ("9", 9.0),
    "durability": ("normal", "normal"),
    "device_timeout": ("12", 12.0),
    "device_offline_grace": ("2.5", 2.5),
    "offline_policy": ("refuse", "refuse"),
    "runtime": ("dapr", "dapr"),
    "dapr_http_port": ("3600", 3600),
    "redis_url": ("redis://cache.example:6380/1", "redis://cache.example:6380/1"),
    "dapr_pubsub": ("bus", "bus"),
    "dapr_topic": ("changes", "changes"),
    "submit_fast_path": ("false", False),
    "access_log": ("true", True),
    "log_format": ("json", "json"),
    "max_body_bytes": ("1024", 1024),
    "send_buffer": ("8", 8),
    "stall_seconds": ("3", 3.0),
    "ping_seconds": ("4", 4.0),
    "dapr_api_token": ("dapr-token", SecretStr("dapr-token")),
    "app_api_token": ("app-token", SecretStr("app-token")),
}

#: Fields read from their variables only: secrets, which a command line would show to every user (`ps`).
ENVIRONMENT_ONLY = {"dapr_api_token", "app_api_token"}

#: A variable's bad text for each field that can have one, and how the one error line's problem begins.
BAD: dict[str, tuple[str, str]] = {
    "port": ("70000", "input should be less than or equal to 65535 (got 70000)"),
    "message_seconds": ("-5", "input should be greater than 0 (got -5.0)"),
    "max_text_length": ("1001", "input should be less than or equal to 1000 (got 1001)"),
    "submit_rate": ("-1", "input should be greater than or equal to 0 (got -1.0)"),
    "submit_burst": ("0", "input should be greater than or equal to 1 (got 0)"),
    "rate_limit_ipv6_prefix": ("sixty-four", "'sixty-four' is not a valid integer."),
    "max_streams_per_client": ("0", "input should be greater than or equal to 1 (got 0)"),
    "max_connections_per_client": ("-1", "input should be greater than or equal to 0 (got -1)"),
    "header_timeout": ("0", "input should be greater than 0 (got 0.0)"),
    "submit_access": ("closed", "'closed' is not one of 'open', 'key'."),
    "idle_seconds": ("0", "input should be greater than 0 (got 0.0)"),
    "durability": ("fast", "'fast' is not one of 'full', 'normal'."),
    "device_timeout": ("soon", "'soon' is not a valid float."),
    "device_offline_grace": ("-1", "input should be greater than or equal to 0 (got -1.0)"),
    "offline_policy": ("drop", "'drop' is not one of 'accept', 'refuse'."),
    "queue_length": ("1001", "input should be less than or equal to 1000 (got 1001)"),
    "history_days": ("-1", "input should be greater than or equal to 0 (got -1.0)"),
    "bookings_per_client": ("-1", "input should be greater than or equal to 0 (got -1)"),
    "runtime": ("kubernetes", "'kubernetes' is not one of 'embedded', 'dapr'."),
    "dapr_http_port": ("0", "input should be greater than or equal to 1 (got 0)"),
    "submit_fast_path": ("maybe", "'maybe' is not a valid boolean."),
    "access_log": ("loud", "'loud' is not a valid boolean."),
    "log_format": ("xml", "'xml' is not one of 'text', 'json'."),
    "max_body_bytes": ("100", "input should be greater than or equal to 256 (got 100)"),
    "send_buffer": ("100001", "input should be less than or equal to 100000 (got 100001)"),
    "stall_seconds": ("0", "input should be greater than 0 (got 0.0)"),
    "ping_seconds": ("-1", "input should be greater than 0 (got -1.0)"),
    "operator_key": (" ", "the key is blank; give a key, or leave the option out to run without one"),
}


@pytest.fixture(autouse=True)
def no_settings_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's shell may set some of these; every test here sets its own."""
    for name in Settings.model_fields:
        for variable in Settings.option(name).variables:
            monkeypatch.delenv(variable, raising=False)


def parsed(*args: str) -> Settings:
    """The Settings `airdisplay serve ARGS` starts with, as its command line and the environment give them."""
    ctx = serve.make_context("serve", list(args))
    return serve_settings(ctx.params)


def test_every_setting_is_one_option_of_serve_with_its_default_and_variables():
    for name, field in Settings.model_fields.items():
        option = Settings.option(name)
        matching = [p for p in serve.params if p.name == name]
        if name in ENVIRONMENT_ONLY:
            assert matching == [] and not option.command_line, name
            continue
        assert len(matching) == 1, name
        [param] = matching
        assert isinstance(param, click.Option)
        assert param.default == field.default, name
        assert param.envvar == (option.variables[0] if len(option.variables) == 1 else list(option.variables))
        assert param.hidden == option.hidden, name
        assert field.description and field.description in (param.help or ""), name
        assert option.variables[0] in (param.help or ""), name
    extra = {p.name for p in serve.params} - set(Settings.model_fields)
    assert extra == {"legacy_api_key"}  # the hidden older spelling of --operator-key; every other is a field


def test_the_fields_read_only_from_the_environment_are_secrets():
    fields = Settings.model_fields.items()
    secrets = {n for n, f in fields if SecretStr in getattr(f.annotation, "__args__", ())}
    assert {n for n in Settings.model_fields if not Settings.option(n).command_line} == ENVIRONMENT_ONLY
    assert secrets > ENVIRONMENT_ONLY  # the operator key may be given on the command line too


def test_every_setting_has_a_sample_that_is_not_its_default():
    assert set(SAMPLES) == set(Settings.model_fields)
    for name, (_, value) in SAMPLES.items():
        assert value != Settings.model_fields[name].default, name


@pytest.mark.parametrize("name", list(SAMPLES))
def test_each_variable_sets_its_setting(monkeypatch, name):
    text, expected = SAMPLES[name]
    for variable in Settings.option(name).variables:
        monkeypatch.setenv(variable, text)
        value = getattr(parsed(), name)
        if isinstance(expected, SecretStr):
            assert isinstance(value, SecretStr) and value.get_secret_value() == expected.get_secret_value()
        else:
            assert value == expected, variable
        monkeypatch.delenv(variable)
    assert getattr(parsed(), name) == Settings.model_fields[name].default


def test_the_command_line_comes_before_the_environment_before_the_default(monkeypatch):
    assert parsed().port == 8000
    monkeypatch.setenv("AIRDISPLAY_PORT", "9002")
    assert parsed().port == 9002
    assert parsed("--port", "9001").port == 9001


def test_the_older_api_key_option_and_variable_still_give_the_operator_key(monkeypatch):
    older = "o" * 64
    key = parsed("--api-key", older).operator_key
    assert key is not None and key.get_secret_value() == older
    monkeypatch.setenv("AIRDISPLAY_API_KEY", older)
    monkeypatch.setenv("AIRDISPLAY_OPERATOR_KEY", "n" * 64)
    key = parsed().operator_key
    assert key is not None and key.get_secret_value() == "n" * 64  # the current name wins


def test_dapr_url_is_made_from_the_dapr_http_port(monkeypatch):
    monkeypatch.setenv("DAPR_HTTP_PORT", "3601")
    assert parsed().dapr_url == "http://127.0.0.1:3601"
    assert Settings().dapr_url == "http://127.0.0.1:3500"


def test_settings_built_directly_do_not_read_the_environment(monkeypatch):
    """Tests build Settings(...) directly: what the shell running them sets must not change them."""
    for name, (text, _) in SAMPLES.items():
        for variable in Settings.option(name).variables:
            monkeypatch.setenv(variable, text)
    assert Settings() == Settings.model_construct()


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_variable_stops_serve_with_one_line_naming_the_option_and_the_variable(tmp_path, name):
    text, problem = BAD[name]
    option = Settings.option(name)
    result = CliRunner().invoke(
        main,
        ["serve", "--data-dir", str(tmp_path / "data")],
        env={option.variables[-1]: text},  # the older name of a field with two: it too is named
    )
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith(
        f"airdisplay: error: Invalid value for '{option.flag}' (from {option.variables[-1]}): {problem}"
    )


def test_a_refused_secret_is_never_echoed():
    """A blank key stops the start before Settings sees it; a key Settings refuses is not echoed either."""
    ctx = serve.make_context("serve", [])
    with pytest.raises(ValidationError) as refused:
        Settings.model_validate({"operator_key": 12345678, "app_api_token": 87654321})
    line = option_problems(ctx, refused.value)
    assert "Invalid value for '--operator-key'" in line and "Invalid value for APP_API_TOKEN" in line
    assert "12345678" not in line and "87654321" not in line


def test_secrets_are_not_shown(monkeypatch):
    monkeypatch.setenv("DAPR_API_TOKEN", "dapr-secret")
    monkeypatch.setenv("AIRDISPLAY_OPERATOR_KEY", "operator-secret-" * 4)
    settings = parsed()
    shown = repr(settings) + str(settings.model_dump()) + CliRunner().invoke(main, ["serve", "--help"]).output
    assert "dapr-secret" not in shown and "operator-secret" not in shown


def test_commands_that_share_an_option_take_its_default_and_variables_from_settings():
    shared = {  # command path: {parameter: the Settings field it is}
        ("keys", "create"): {"data_dir": "data_dir"},
        ("banners", "import"): {"data_dir": "data_dir"},
        ("dapr", "check"): {"port": "port", "dapr_pubsub": "dapr_pubsub"},
        ("dapr", "local"): {"redis_url": "redis_url"},
        ("simulate",): {"api_key": "operator_key"},
    }
    for path, params in shared.items():
        command: click.Command = main
        for part in path:
            assert isinstance(command, click.Group)
            command = command.commands[part]
        for param_name, field in params.items():
            [param] = [p for p in command.params if p.name == param_name]
            variables = Settings.option(field).variables
            assert param.envvar in (variables[0], list(variables)), (path, param_name)
            if field != "operator_key":  # simulate's key is a client's: it has no default to share
                assert param.default == Settings.model_fields[field].default, (path, param_name)
