"""The `airdisplay serve` command as a real process: options, environment, start-up errors, kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.conftest import AIRDISPLAY, free_port, refused_line, spawn, stop, wait_ready


@pytest.mark.slow
async def test_acknowledged_writes_survive_kill_9(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = spawn(
        "--port", str(port), "--data-dir", str(tmp_path), "--message-seconds", "600", "--submit-rate", "0"
    )
    try:
        await asyncio.to_thread(wait_ready, proc, url)
        acknowledged: dict[str, dict] = {}
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:

            async def register_and_show(i: int) -> None:
                banner_id = f"k{i}"
                created = await client.post("/api/v1/banners", json={"id": banner_id, "name": f"Banner {i}"})
                assert created.status_code == 201
                acknowledged[banner_id] = created.json()
                shown = await client.post(f"/api/v1/banners/{banner_id}/message", json={"text": f"msg {i}"})
                assert shown.status_code == 201
                acknowledged[banner_id] = shown.json()

            await asyncio.gather(*(register_and_show(i) for i in range(100)))
        proc.send_signal(signal.SIGKILL)  # right after the last acknowledgement, no shutdown at all
        proc.wait(timeout=10)
    finally:
        stop(proc)

    proc = spawn(
        "--port", str(port), "--data-dir", str(tmp_path), "--message-seconds", "600", "--submit-rate", "0"
    )
    try:
        await asyncio.to_thread(wait_ready, proc, url)
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for banner_id, body in acknowledged.items():
                assert (await client.get(f"/api/v1/banners/{banner_id}")).json() == body
    finally:
        stop(proc)


@pytest.mark.slow
def test_options_come_from_the_environment(tmp_path):
    port = free_port()
    data_dir = tmp_path / "from-env"
    proc = spawn(
        env={
            "AIRDISPLAY_HOST": "127.0.0.1",
            "AIRDISPLAY_PORT": str(port),
            "AIRDISPLAY_DATA_DIR": str(data_dir),
            "AIRDISPLAY_MESSAGE_SECONDS": "42",
        }
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(proc, url)
        httpx.post(f"{url}/api/v1/banners", json={"id": "e1", "name": "Env"}).raise_for_status()
        shown = httpx.post(f"{url}/api/v1/banners/e1/message", json={"text": "hi"}).json()["message"]
        from datetime import datetime

        duration = datetime.fromisoformat(shown["expires_at"]) - datetime.fromisoformat(shown["shown_at"])
        assert duration.total_seconds() == 42
        assert (data_dir / "airdisplay.db").exists()
    finally:
        output = stop(proc)
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("prepare", "args", "expected"),
    [
        ("corrupt", [], "cannot use"),
        ("file-as-dir", [], "is a file"),
        ("none", ["--host", "0.0.0.0"], "needs an operator key"),
        ("none", ["--message-seconds", "0"], "Invalid value for '--message-seconds'"),
        ("bad-keys", [], "is not an AirDisplay keys file"),
        ("bad-blocklist", ["--blocklist", "BLOCKLIST"], "bad pattern"),
        ("none", ["--blocklist", "/nonexistent/blocklist.txt"], "cannot read blocklist"),
    ],
    ids=[
        "corrupt database",
        "data dir is a file",
        "public without key",
        "zero duration",
        "corrupt keys file",
        "bad blocklist pattern",
        "missing blocklist",
    ],
)
def test_start_up_problems_exit_with_a_clear_error(tmp_path, prepare, args, expected):
    data_dir: Path = tmp_path / "data"
    if prepare == "corrupt":
        data_dir.mkdir()
        (data_dir / "airdisplay.db").write_bytes(b"garbage" * 1000)
    elif prepare == "file-as-dir":
        data_dir.write_text("not a directory")
    elif prepare == "bad-keys":
        data_dir.mkdir()
        (data_dir / "keys.json").write_text('{"keys": [{"id": 1}]}')
    elif prepare == "bad-blocklist":
        (tmp_path / "blocklist.txt").write_text("fine\nre:(unclosed\n")
        args = [str(tmp_path / "blocklist.txt") if a == "BLOCKLIST" else a for a in args]
    result = subprocess.run(
        [*AIRDISPLAY, "serve", "--port", str(free_port()), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert expected in result.stderr
    assert len((result.stderr + result.stdout).strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    ("args", "env", "option"),
    [
        (["--message-seconds", "-5"], {}, "'--message-seconds'"),
        ([], {"AIRDISPLAY_MESSAGE_SECONDS": "-5"}, "'--message-seconds' (from AIRDISPLAY_MESSAGE_SECONDS)"),
        (["--max-text-length", "0"], {}, "'--max-text-length'"),
        (["--idle-seconds", "0"], {}, "'--idle-seconds'"),
        (["--device-timeout", "-1"], {}, "'--device-timeout'"),
        (["--port", "70000"], {}, "'--port'"),
        (["--submit-rate", "-1"], {}, "'--submit-rate'"),
        ([], {"AIRDISPLAY_SUBMIT_BURST": "0"}, "'--submit-burst' (from AIRDISPLAY_SUBMIT_BURST)"),
        (["--max-streams-per-client", "0"], {}, "'--max-streams-per-client'"),
        (["--durability", "fast"], {}, "'--durability'"),
        (["--runtime", "dapr", "--dapr-http-port", "0"], {}, "'--dapr-http-port'"),
        (["--message-seconds", "soon"], {}, "'--message-seconds'"),
        (["--prot", "9000"], {}, "'--prot'"),
        (["--rate-limit-ipv6-prefix", "129"], {}, "'--rate-limit-ipv6-prefix'"),
        (["--rate-limit-ipv6-prefix", "0"], {}, "'--rate-limit-ipv6-prefix'"),
        ([], {"AIRDISPLAY_RATE_LIMIT_IPV6_PREFIX": "sixty-four"}, "'--rate-limit-ipv6-prefix'"),
        ([], {"DAPR_HTTP_PORT": "0"}, "'--dapr-http-port' (from DAPR_HTTP_PORT)"),
        ([], {"AIRDISPLAY_STALL_SECONDS": "0"}, "'--stall-seconds' (from AIRDISPLAY_STALL_SECONDS)"),
    ],
)
def test_a_bad_option_stops_start_up_with_one_line_naming_the_option(tmp_path, args, env, option):
    line = refused_line("--data-dir", str(tmp_path / "data"), *args, env={**os.environ, **env})
    assert line.startswith("airdisplay: error: ") and option in line


def test_a_port_in_use_stops_start_up_with_one_line_naming_the_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*AIRDISPLAY, "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 2
    lines = (result.stderr + result.stdout).strip().splitlines()
    assert lines == [
        f"airdisplay: error: port {port} on 127.0.0.1 is already in use; stop what listens there "
        "or choose another --port"
    ]


#: What uvicorn logs per WebSocket at INFO: the accept or refusal line and websockets' open/close lines.
WEBSOCKET_LOG_LINES = ('"WebSocket /', "connection open", "connection closed", "connection rejected")


@pytest.mark.slow
@pytest.mark.parametrize("access_log", [False, True], ids=["default", "--access-log"])
async def test_websocket_connections_are_logged_only_with_access_log(tmp_path, access_log):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["--port", str(port), "--data-dir", str(tmp_path), "--max-streams-per-client", "2"]
    proc = spawn(*args, *(["--access-log"] if access_log else []))
    try:
        await asyncio.to_thread(wait_ready, proc, url)
        ws_url = url.replace("http://", "ws://")
        async with websockets.connect(f"{ws_url}/api/v1/stream"), websockets.connect(f"{ws_url}/ws"):
            with pytest.raises(InvalidStatus) as refused:  # a third stream from this client: 429
                await websockets.connect(f"{ws_url}/api/v1/stream")
            assert refused.value.response.status_code == 429
    finally:
        log = stop(proc)
    assert "Application startup complete" in log  # uvicorn's log was captured
    found = [line for line in log.splitlines() if any(marker in line for marker in WEBSOCKET_LOG_LINES)]
    if access_log:
        assert sum('"WebSocket /' in line and "[accepted]" in line for line in found) == 2, found
        assert any('"WebSocket /api/v1/stream" 429' in line for line in found), found
        assert any("connection open" in line for line in found), found
    else:
        assert found == []


def test_public_listening_with_a_key_is_allowed_to_start(tmp_path):
    """Only checks the exposure rule; the server itself is exercised elsewhere."""
    from airdisplay.config import Settings

    Settings(host="0.0.0.0").check_exposure(has_operator_key=True)
    with pytest.raises(ValueError, match="operator key"):
        Settings(host="0.0.0.0").check_exposure(has_operator_key=False)
    Settings(host="::1").check_exposure(has_operator_key=False)
    Settings(host="localhost").check_exposure(has_operator_key=False)


def test_keys_commands_create_list_and_revoke(tmp_path):
    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*AIRDISPLAY, "keys", *args, "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
        )

    created = keys("create", "--role", "operator", "--label", "ops team")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("adk_") and "shown only now" in created.stderr
    key_id = key.split("_")[1]
    listed = keys("list")
    assert key_id in listed.stdout and "operator" in listed.stdout and "ops team" in listed.stdout
    assert key.split("_", 2)[2] not in listed.stdout + (tmp_path / "keys.json").read_text()
    assert keys("revoke", key_id).returncode == 0
    assert key_id not in keys("list").stdout
    unknown = keys("revoke", key_id)
    assert (
        unknown.returncode == 2 and "no key with id" in unknown.stderr and "Traceback" not in unknown.stderr
    )
