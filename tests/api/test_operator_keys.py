"""The operator key given at start-up, and operator routes once keys are lost, against a real server."""

from __future__ import annotations

import secrets

import pytest
from pydantic import SecretStr, ValidationError

from airdisplay.access import (
    MIN_KEY_BITS,
    OPERATOR_MARKER,
    KeyRing,
    KeysFile,
    Role,
    StartupKeyError,
    key_bits,
)
from airdisplay.config import Settings
from tests.conftest import bearer, eventually

NEW_BANNER = {"id": "k1", "name": "Keyed"}


async def test_a_printed_key_from_another_data_directory_works_as_a_start_up_key(start_server, tmp_path):
    _, key = KeysFile(tmp_path / "elsewhere").create(Role.OPERATOR)
    server = await start_server(data_dir=tmp_path / "data", api_key=key)
    assert (await server.client.post("/api/v1/banners", json=NEW_BANNER)).status_code == 401
    created = await server.client.post("/api/v1/banners", json=NEW_BANNER, headers=bearer(key))
    assert created.status_code == 201
    metrics = await server.client.get("/metrics", headers=bearer(key))
    assert metrics.status_code == 200


async def test_a_stored_key_given_at_start_up_is_that_key_and_its_revocation_holds(start_server, tmp_path):
    keys = KeysFile(tmp_path)
    record, key = keys.create(Role.OPERATOR, "automation")
    server = await start_server(api_key=key)
    assert (
        await server.client.post("/api/v1/banners", json=NEW_BANNER, headers=bearer(key))
    ).status_code == 201
    keys.revoke(record.id)

    async def metrics_with_the_key() -> int:
        return (await server.client.get("/metrics", headers=bearer(key))).status_code

    await eventually(metrics_with_the_key, lambda code: code == 401, what="the revoked start-up key refused")
    assert (await server.client.get("/metrics")).status_code == 401  # and no anonymous access either


def test_a_stored_key_of_another_role_or_secret_is_refused_as_start_up_key(tmp_path):
    keys = KeysFile(tmp_path)
    _, submitter = keys.create(Role.SUBMITTER)
    with pytest.raises(StartupKeyError, match="it is submitter key"):
        KeyRing(tmp_path, submitter)
    _, operator = keys.create(Role.OPERATOR)
    with pytest.raises(StartupKeyError, match="secret differs"):
        KeyRing(tmp_path, operator[: len("adk_0123456789ab_")] + "x" * 43)  # its id, another secret


async def test_a_start_up_key_with_a_trailing_newline_is_the_key_without_it(start_server):
    """A Kubernetes secret made from a file ends with a newline, which no Authorization header can carry."""
    server = await start_server(api_key="operator-key-from-a-secret-file\n")
    created = await server.client.post(
        "/api/v1/banners", json=NEW_BANNER, headers=bearer("operator-key-from-a-secret-file")
    )
    assert created.status_code == 201


async def test_a_restart_without_the_start_up_key_keeps_operator_routes_locked(start_server, tmp_path):
    first = await start_server(api_key="operator-key-of-the-first-run")
    assert (tmp_path / OPERATOR_MARKER).exists()
    await first.stop()
    second = await start_server()
    assert (await second.client.post("/api/v1/banners", json=NEW_BANNER)).status_code == 401
    assert (await second.client.get("/metrics")).status_code == 401
    assert KeysFile(tmp_path).allow_open()

    async def anonymous_metrics() -> int:
        return (await second.client.get("/metrics")).status_code

    await eventually(anonymous_metrics, lambda code: code == 200, what="operator routes open again")


async def test_without_a_key_ever_operator_routes_stay_open_on_loopback(start_server, tmp_path):
    """The try-it-out mode is still there: a submitter key does not lock operator routes."""
    KeysFile(tmp_path).create(Role.SUBMITTER)
    server = await start_server()
    assert (await server.client.post("/api/v1/banners", json=NEW_BANNER)).status_code == 201
    assert not (tmp_path / OPERATOR_MARKER).exists()


@pytest.mark.parametrize(
    ("key", "bits"),
    [
        ("x", 4),
        ("hunter2", 36),
        ("change-me-operator-key", 105),
        ("0123456789abcdef" * 2, 128),  # 'openssl rand -hex 16'
        ("7" * 39, 129),
        ("Ab3-" * 5 + "xY", 132),  # 22 base64url characters, as secrets.token_urlsafe(16) prints
        ("k" * 21 + "ü", 159),  # any non-ASCII character: 128 more,
    ],
)
def test_key_bits_is_length_times_the_alphabet_in_bits(key, bits):
    assert key_bits(key) == bits


def test_beyond_loopback_a_start_up_key_needs_128_bits_and_none_may_be_blank():
    for strong in (secrets.token_hex(16), secrets.token_urlsafe(32), "adk_0123456789ab_" + "x" * 43):
        Settings(host="0.0.0.0", operator_key=SecretStr(strong)).check_exposure(has_operator_key=True)
    weak = SecretStr(secrets.token_hex(15))  # 120 bits
    with pytest.raises(StartupKeyError, match=f"needs {MIN_KEY_BITS}"):
        Settings(host="0.0.0.0", operator_key=weak).check_exposure(has_operator_key=True)
    Settings(host="127.0.0.1", operator_key=weak).check_exposure(has_operator_key=True)  # loopback: any key
    with pytest.raises(ValidationError, match="blank"):
        Settings(operator_key=SecretStr(" \n"))
