"""`airdisplay dapr check`: the shipped configuration passes; the usual mistakes fail with clear messages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from airdisplay.runtimes.dapr._check import Expectations, check_dapr_setup, is_host_port

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy" / "dapr"


@pytest.fixture
def setup(tmp_path) -> Path:
    shutil.copytree(DEPLOY, tmp_path / "dapr")
    return tmp_path / "dapr"


def errors(findings) -> list[str]:
    return [f.message for f in findings if f.level == "error"]


def warnings(findings) -> list[str]:
    return [f.message for f in findings if f.level == "warning"]


def edit(path: Path, old: str, new: str) -> None:
    """Replace text that must be there, so a changed fixture fails loudly instead of testing nothing."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def check_all(setup: Path, expect: Expectations | None = None):
    return check_dapr_setup(
        setup / "components", expect or Expectations(), setup / "dapr.yaml", setup / "k8s"
    )


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


def test_the_repository_deploy_files_pass_every_check():
    assert check_dapr_setup(DEPLOY / "components", Expectations(), DEPLOY / "dapr.yaml", DEPLOY / "k8s") == []
    result = run_check(cwd=REPO)  # the defaults: components, dapr.yaml and the k8s manifests
    assert result.returncode == 0, result.stderr
    assert "deploy/dapr/k8s look right (0 warning(s))" in result.stdout


def test_default_run_checks_the_k8s_manifests_too(tmp_path):
    shutil.copytree(DEPLOY, tmp_path / "deploy" / "dapr")
    edit(tmp_path / "deploy/dapr/k8s/airdisplay.yaml", 'app-port: "8000"', 'app-port: "8001"')
    result = run_check(cwd=tmp_path)
    assert result.returncode == 1
    assert "dapr.io/app-port 8001 but the container serves on --port 8000" in result.stderr


def test_app_token_secret_without_key_token_is_an_error(setup):
    # The form the repository had: the token under another key of the Secret the annotation names.
    manifest = setup / "k8s" / "airdisplay.yaml"
    edit(manifest, "  token: change-me-daprd-to-app", "  app-api-token: change-me-daprd-to-app")
    edit(manifest, "name: airdisplay-app-token, key: token", "name: airdisplay-app-token, key: app-api-token")
    found = errors(check_all(setup))
    assert any(
        "app-token-secret names Secret airdisplay-app-token, which has no key 'token'" in m for m in found
    )


def test_app_api_token_must_be_the_token_daprd_sends(setup):
    edit(
        setup / "k8s" / "airdisplay.yaml",
        "name: airdisplay-app-token, key: token",
        "name: airdisplay-operator-key, key: api-key",
    )
    found = errors(check_all(setup))
    assert any("env APP_API_TOKEN must read Secret airdisplay-app-token key token" in m for m in found)


def test_env_reading_a_missing_secret_key_is_an_error(setup):
    edit(setup / "k8s" / "airdisplay.yaml", "key: api-key", "key: operator-key")
    found = errors(check_all(setup))
    assert any("reads key 'operator-key' of Secret airdisplay-operator-key" in m for m in found)


def test_redis_url_without_the_components_password_is_an_error(setup):
    edit(
        setup / "k8s" / "airdisplay.yaml",
        "redis://:$(AIRDISPLAY_REDIS_PASSWORD)@redis-master",
        "redis://redis-master",
    )
    found = errors(check_all(setup))
    assert any(
        "redisPassword from secret redis key redis-password but AIRDISPLAY_REDIS_URL carries no password" in m
        for m in found
    )


def test_redis_password_must_be_listed_before_the_url(setup):
    password = (
        "            - name: AIRDISPLAY_REDIS_PASSWORD\n"
        "              valueFrom: { secretKeyRef: { name: redis, key: redis-password } }\n"
    )
    url = (
        "            - name: AIRDISPLAY_REDIS_URL\n"
        "              value: redis://:$(AIRDISPLAY_REDIS_PASSWORD)@redis-master.default.svc.cluster.local:6379/0\n"
    )
    edit(setup / "k8s" / "airdisplay.yaml", password + url, url + password)
    found = errors(check_all(setup))
    assert any(
        "env AIRDISPLAY_REDIS_URL uses $(AIRDISPLAY_REDIS_PASSWORD)" in m
        and "list AIRDISPLAY_REDIS_PASSWORD before it" in m
        for m in found
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'app-port: "8000"',
            'app-port: "3000"',
            "dapr.io/app-port 3000 but the container serves on --port 8000",
        ),
        ('dapr.io/enabled: "true"', 'dapr.io/enabled: "false"', 'dapr.io/enabled must be "true"'),
        ('        dapr.io/app-id: "airdisplay"\n', "", "dapr.io/app-id is missing"),
        ('        dapr.io/app-port: "8000"\n', "", "dapr.io/app-port is missing"),
    ],
    ids=["app port differs", "not enabled", "no app id", "no app port"],
)
def test_deployment_annotations_must_match_the_container(setup, old, new, expected):
    edit(setup / "k8s" / "airdisplay.yaml", old, new)
    assert any(expected in m for m in errors(check_all(setup)))


def test_k8s_components_pass_the_component_checks(setup):
    components = setup / "k8s" / "components.yaml"
    edit(components, "actorStateStore", "keyPrefix")
    edit(components, '"{podName}"', '"airdisplay"')
    findings = check_all(setup)
    assert any('no state store has metadata actorStateStore: "true"' in m for m in errors(findings))
    assert any("reaches only one of them" in m for m in warnings(findings))


@pytest.mark.parametrize("component", ["components/pubsub.yaml", "k8s/components.yaml"])
def test_per_replica_consumer_without_stream_ttl_is_a_warning_only(setup, component):
    path = setup / component
    edit(path, '    - name: streamTTL\n      value: "60s"\n', "")
    findings = check_all(setup)
    assert errors(findings) == []
    assert [m for m in warnings(findings) if "replays the stream's whole retained history" in m]
    cap = '    - name: maxLenApprox\n      value: "1000"\n'
    edit(path, "    - name: concurrency\n", cap + "    - name: concurrency\n")
    assert check_all(setup) == []  # a small cap does the same work


@pytest.mark.parametrize("component", ["components/pubsub.yaml", "k8s/components.yaml"])
def test_stream_ttl_with_max_len_is_an_error_as_the_ttl_would_be_ignored(setup, component):
    edit(
        setup / component,
        '    - name: streamTTL\n      value: "60s"\n',
        '    - name: streamTTL\n      value: "60s"\n    - name: maxLenApprox\n      value: "100000"\n',
    )
    assert any("trims by length only and ignores streamTTL" in m for m in errors(check_all(setup)))


def test_health_check_path_without_enable_flag_is_an_error(setup):
    edit(setup / "dapr.yaml", "  enableAppHealthCheck: true\n", "")
    found = errors(check_all(setup))
    assert any("appHealthCheckPath has no effect without enableAppHealthCheck: true" in m for m in found)


@pytest.mark.parametrize(
    ("line", "kind"),
    [("  appLogDestination: console\n", "app"), ("  daprdLogDestination: console\n", "daprd")],
)
def test_replicas_in_one_app_dir_must_not_log_to_files(setup, line, kind):
    edit(setup / "dapr.yaml", line, "")  # back to the CLI's default: a file for each replica
    found = errors(check_all(setup))
    assert any(
        f"write {kind} logs to a file, so their .dapr/logs/airdisplay_{kind}_<time>.log" in m for m in found
    )
    edit(
        setup / "dapr.yaml",
        "    appDirPath: ../../\n    appPort: 8002",
        "    appDirPath: ../\n    appPort: 8002",
    )
    assert errors(check_all(setup)) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "  schedulerHostAddress: localhost:50006\n",
            "",
            "placementHostAddress without schedulerHostAddress",
        ),
        (
            "  placementHostAddress: localhost:50005\n",
            "",
            "schedulerHostAddress without placementHostAddress",
        ),
        ("localhost:50005", "localhost", "placementHostAddress 'localhost' is not host:port"),
        ("localhost:50006", '""', "schedulerHostAddress '' is not host:port"),
    ],
    ids=["no scheduler", "no placement", "no port", "empty scheduler"],
)
def test_run_file_names_placement_and_scheduler_together(setup, old, new, expected):
    edit(setup / "dapr.yaml", old, new)
    assert any(expected in m for m in errors(check_all(setup)))


def test_run_file_without_placement_or_scheduler_warns_of_the_cli_defaults(setup):
    edit(setup / "dapr.yaml", "  placementHostAddress: localhost:50005\n", "")
    edit(setup / "dapr.yaml", "  schedulerHostAddress: localhost:50006\n", "")
    findings = check_all(setup)
    assert errors(findings) == []
    [warning] = warnings(findings)  # once, though both replicas lack them
    assert "names neither placementHostAddress nor schedulerHostAddress" in warning
    assert "(placement localhost:50005, scheduler localhost:50006)" in warning


@pytest.mark.parametrize(
    ("address", "valid"),
    [
        ("localhost:50005", True),
        ("dapr-placement-server.dapr-system.svc.cluster.local:50005", True),
        ("[::1]:50006", True),
        ("p-0:50005,p-1:50005", True),
        ("localhost", False),
        (":50005", False),
        ("localhost:0", False),
        ("localhost:65536", False),
        ("", False),
    ],
)
def test_host_port(address, valid):
    assert is_host_port(address) is valid


def test_placement_and_scheduler_settings_must_be_host_port(setup):
    components = str(setup / "components")
    good = run_check("--resources-path", components, "--placement-host-address", "localhost:50005")
    assert good.returncode == 0, good.stderr
    bad = run_check("--resources-path", components, "--placement-host-address", "localhost")
    assert bad.returncode == 1
    assert "--placement-host-address: 'localhost' is not host:port" in bad.stderr
    env = {**os.environ, "AIRDISPLAY_DAPR_SCHEDULER": "scheduler:70000"}
    bad = run_check("--resources-path", components, env=env)
    assert bad.returncode == 1
    assert "--scheduler-host-address: 'scheduler:70000' is not host:port" in bad.stderr


def test_missing_k8s_directory_is_an_error(setup, tmp_path):
    result = run_check("--resources-path", str(setup / "components"), "--k8s", str(tmp_path / "nope"))
    assert result.returncode == 1 and "no such directory: pass --k8s DIR" in result.stderr


def test_outside_the_repository_the_check_reads_the_components_the_package_carries(tmp_path):
    """A `pip install` has no deploy/dapr: the default then is the package's own components."""
    result = subprocess.run(
        [sys.executable, "-m", "airdisplay", "dapr", "check"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "airdisplay/runtimes/dapr/components look right" in result.stdout
