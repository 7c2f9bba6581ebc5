"""`airdisplay dapr check`: the shipped configuration passes; the usual mistakes fail with clear messages."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from airdisplay.runtimes.dapr._check import Expectations, check_dapr_setup

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "dapr"


@pytest.fixture
def setup(tmp_path) -> Path:
    shutil.copytree(DEPLOY, tmp_path / "dapr")
    return tmp_path / "dapr"


def errors(findings) -> list[str]:
    return [f.message for f in findings if f.level == "error"]


def run_check(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "airdisplay", "dapr", "check", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


def test_the_shipped_configuration_passes(setup):
    findings = check_dapr_setup(setup / "components", Expectations(), setup / "dapr.yaml")
    assert findings == []
    result = run_check("--resources-path", str(setup / "components"), "--run-file", str(setup / "dapr.yaml"))
    assert result.returncode == 0, result.stderr
    assert "look right" in result.stdout


def test_missing_actor_state_store_is_an_error(setup):
    path = setup / "components" / "statestore.yaml"
    path.write_text(path.read_text().replace("actorStateStore", "keyPrefix"))
    result = run_check("--resources-path", str(setup / "components"))
    assert result.returncode == 1
    assert 'no state store has metadata actorStateStore: "true"' in result.stderr


def test_actor_state_store_flag_must_say_true(setup):
    path = setup / "components" / "statestore.yaml"
    path.write_text(path.read_text().replace('value: "true"', 'value: "yes"'))
    assert any(
        "actorStateStore must be" in m for m in errors(check_dapr_setup(setup / "components", Expectations()))
    )


def test_wrong_pubsub_component_name_is_an_error(setup):
    path = setup / "components" / "pubsub.yaml"
    path.write_text(path.read_text().replace("name: pubsub", "name: redis-pubsub"))
    found = errors(check_dapr_setup(setup / "components", Expectations()))
    assert any("'pubsub' but the components define: redis-pubsub" in m for m in found)


def test_wrong_app_port_in_the_run_file_is_an_error(setup):
    path = setup / "dapr.yaml"
    path.write_text(path.read_text().replace("appPort: 8002", "appPort: 8003"))
    found = errors(check_dapr_setup(setup / "components", Expectations(), path))
    assert any("appPort 8003 but the command serves on --port 8002" in m for m in found)


def test_daprd_app_port_must_match_the_serve_port(setup):
    result = run_check("--resources-path", str(setup / "components"), "--port", "8000", "--app-port", "3000")
    assert result.returncode == 1
    assert "daprd sends calls to port 3000 but AirDisplay listens on 8000" in result.stderr


def test_shared_consumer_group_is_a_warning_only(setup):
    path = setup / "components" / "pubsub.yaml"
    path.write_text(path.read_text().replace('"{uuid}"', '"airdisplay"'))
    findings = check_dapr_setup(setup / "components", Expectations())
    assert errors(findings) == []
    assert any("reaches only one of them" in f.message for f in findings if f.level == "warning")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p.write_text("kind: Component\n  bad: [indent"), "is not valid YAML"),
        (
            lambda p: p.write_text(p.read_text().replace("dapr.io/v1alpha1", "dapr.io/v1")),
            "apiVersion must be",
        ),
        (
            lambda p: p.write_text(p.read_text().replace("name: statestore", "name: State_Store")),
            "lowercase DNS",
        ),
        (
            lambda p: p.write_text(
                p.read_text().replace("      value: localhost:6379\n", '      value: ""\n')
            ),
            "redisHost",
        ),
    ],
    ids=["bad yaml", "wrong apiVersion", "bad name", "no redis host"],
)
def test_broken_component_files_are_errors(setup, mutate, expected):
    mutate(setup / "components" / "statestore.yaml")
    assert any(expected in m for m in errors(check_dapr_setup(setup / "components", Expectations())))


def test_missing_directory_is_an_error(tmp_path):
    result = run_check("--resources-path", str(tmp_path / "nope"))
    assert result.returncode == 1 and "no such directory" in result.stderr


def test_dapr_mode_beyond_loopback_needs_the_app_token(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "airdisplay",
            "serve",
            "--runtime",
            "dapr",
            "--host",
            "0.0.0.0",
            "--api-key",
            "k",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "APP_API_TOKEN" in result.stderr
