"""Operator access of a real `airdisplay serve`: behind a trusted proxy, once its keys are lost, and the
operator key given at start-up (docs/security.md)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from airdisplay.access import OPERATOR_MARKER, KeysFile, Role
from tests.conftest import AIRDISPLAY, bearer, free_port, refused_line, stop, wait_ready, wait_until

#: A client the trusted proxy forwards for: the address a real remote caller would have.
REMOTE = {"X-Forwarded-For": "203.0.113.9"}
BANNER = {"id": "p1", "name": "Proxied"}
#: Start-up key variables the developer's shell may hold; every test here sets its own.
KEY_VARIABLES = ("AIRDISPLAY_OPERATOR_KEY", "AIRDISPLAY_API_KEY")


def clean_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}, **extra}


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]
    log: str = field(default="")

    def post_banner(self, headers: dict[str, str] | None = None) -> int:
        return httpx.post(f"{self.url}/api/v1/banners", json=BANNER, headers=headers, timeout=10).status_code

    def metrics(self, headers: dict[str, str] | None = None) -> int:
        return httpx.get(f"{self.url}/metrics", headers=headers, timeout=10).status_code


@contextlib.contextmanager
def serving(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """A real `airdisplay serve` on a free loopback port; its log is in `.log` once the block ends."""
    port = free_port()
    proc = subprocess.Popen(
        [*AIRDISPLAY, "serve", "--port", str(port), "--data-dir", str(data_dir), *args],
        env=clean_env(**(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    served = Served(f"http://127.0.0.1:{port}", proc)
    try:
        wait_ready(proc, served.url)
        yield served
    finally:
        served.log = stop(proc)


def keys_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AIRDISPLAY, "keys", *args, "--data-dir", str(data_dir)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.slow
def test_a_trusted_proxy_leaves_operator_routes_closed_without_a_key(tmp_path):
    """The proxy connects from loopback whoever its client is: no try-it-out mode behind it."""
    with serving(tmp_path, "--forwarded-allow-ips", "127.0.0.1") as served:
        assert served.post_banner(REMOTE) == 401
        assert served.metrics(REMOTE) == 401
        assert served.post_banner() == 401  # a request the proxy sent without the header
        assert httpx.get(f"{served.url}/api/v1/banners", headers=REMOTE).status_code == 200
        created = keys_cli(tmp_path, "create", "--role", "operator")
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip()
        with_key = {**REMOTE, **bearer(key)}
        wait_until(
            lambda: served.post_banner(with_key), lambda code: code == 201, what="the new key in force"
        )
    assert "operator routes refuse everyone" in served.log and "--forwarded-allow-ips" in served.log


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["revoked", "keys file deleted"])
def test_losing_the_last_operator_key_on_a_running_server_locks_operator_routes(tmp_path, loss):
    record, key = KeysFile(tmp_path).create(Role.OPERATOR, "ops")
    with serving(tmp_path) as served:
        assert served.post_banner() == 401
        if loss == "revoked":
            assert keys_cli(tmp_path, "revoke", record.id).returncode == 0
        else:
            (tmp_path / "keys.json").unlink()
        wait_until(lambda: served.metrics(bearer(key)), lambda code: code == 401, what="the lost key refused")
        assert served.post_banner() == 401
        assert served.metrics() == 401
    assert "no operator key is left" in served.log


@pytest.mark.slow
def test_a_restart_without_the_keys_file_stays_locked_until_allow_open(tmp_path):
    KeysFile(tmp_path).create(Role.OPERATOR, "ops")
    (tmp_path / "keys.json").unlink()
    with serving(tmp_path) as served:
        assert served.post_banner() == 401
        assert served.metrics() == 401
        reopened = keys_cli(tmp_path, "allow-open")
        assert reopened.returncode == 0 and "open again" in reopened.stderr
        wait_until(served.metrics, lambda code: code == 200, what="operator routes open again")
        assert served.post_banner() == 201
    assert "this data directory had one" in served.log and "airdisplay keys allow-open" in served.log


def test_allow_open_refuses_while_operator_keys_remain(tmp_path):
    created = keys_cli(tmp_path, "create", "--role", "operator")
    key_id = created.stdout.strip().split("_")[1]
    assert (tmp_path / OPERATOR_MARKER).exists()
    refused = keys_cli(tmp_path, "allow-open")
    assert refused.returncode == 2 and key_id in refused.stderr and "revoke them first" in refused.stderr
    assert (tmp_path / OPERATOR_MARKER).exists()
    assert keys_cli(tmp_path, "revoke", key_id).returncode == 0
    assert (tmp_path / OPERATOR_MARKER).exists()  # revoking the last key does not reopen anything
    assert keys_cli(tmp_path, "allow-open").returncode == 0
    assert not (tmp_path / OPERATOR_MARKER).exists()
    again = keys_cli(tmp_path, "allow-open")
    assert again.returncode == 0 and "were not locked" in again.stderr


@pytest.mark.slow
def test_a_start_up_key_in_the_printed_shape_is_accepted_through_the_cli(tmp_path):
    """A key printed by `keys create` for another data directory: a plain operator secret here."""
    _, key = KeysFile(tmp_path / "elsewhere").create(Role.OPERATOR)
    with serving(tmp_path / "data", env={"AIRDISPLAY_OPERATOR_KEY": key}) as served:
        assert served.post_banner() == 401
        assert served.post_banner(bearer(key)) == 201


SUBMITTER = "SUBMITTER-KEY"


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            ["--host", "0.0.0.0", "--operator-key", "x"],
            {},
            "'--operator-key': a key of at most 4 random bits",
        ),
        (
            ["--host", "0.0.0.0"],
            {"AIRDISPLAY_OPERATOR_KEY": "change-me-operator-key"},
            "'--operator-key' (from AIRDISPLAY_OPERATOR_KEY): a key of at most 105 random bits is too weak "
            "for listening on 0.0.0.0",
        ),
        (
            ["--forwarded-allow-ips", "127.0.0.1", "--operator-key", "hunter2"],
            {},
            "too weak for a server behind a proxy",
        ),
        (["--operator-key", ""], {}, "'--operator-key': the key is blank"),
        (["--operator-key", "  "], {}, "'--operator-key': the key is blank"),
        ([], {"AIRDISPLAY_OPERATOR_KEY": ""}, "AIRDISPLAY_OPERATOR_KEY is set but blank"),
        ([], {"AIRDISPLAY_OPERATOR_KEY": SUBMITTER}, "it is submitter key"),
    ],
    ids=[
        "one character beyond loopback",
        "placeholder from the environment",
        "short key behind a proxy",
        "empty key",
        "blank key",
        "empty variable",
        "a stored submitter key",
    ],
)
def test_an_unusable_start_up_key_stops_start_up_with_one_line_naming_the_option(
    tmp_path, args, env, expected
):
    data_dir = tmp_path / "data"
    if env.get("AIRDISPLAY_OPERATOR_KEY") == SUBMITTER:
        env = {"AIRDISPLAY_OPERATOR_KEY": KeysFile(data_dir).create(Role.SUBMITTER)[1]}
    line = refused_line("--port", str(free_port()), "--data-dir", str(data_dir), *args, env=clean_env(**env))
    assert line.startswith("airdisplay: error: Invalid value for '--operator-key'")
    assert expected in line
    assert not (data_dir / OPERATOR_MARKER).exists()  # a start that failed records no key
