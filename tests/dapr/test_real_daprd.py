"""End to end on a real daprd and Redis: runs only where the `daprd` binary is on PATH (not on these
machines, where it cannot be installed); it says so when it skips."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

DAPRD = shutil.which("daprd")
pytestmark = pytest.mark.skipif(
    DAPRD is None, reason="daprd is not on PATH; the Dapr host is covered by the double"
)
COMPONENTS = Path(__file__).resolve().parents[2] / "deploy" / "dapr" / "components"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


@pytest.mark.slow
def test_submit_conflict_and_expiry_on_real_daprd(redis_url, tmp_path):
    """Needs `dapr init` (placement and scheduler) and the components pointing at this Redis."""
    components = tmp_path / "components"
    shutil.copytree(COMPONENTS, components)
    redis_host = redis_url.removeprefix("redis://").split("/")[0]
    for path in components.glob("*.yaml"):
        path.write_text(path.read_text().replace("localhost:6379", redis_host))
    app_port, http_port, grpc_port = free_port(), free_port(), free_port()
    env = {**os.environ, "DAPR_HTTP_PORT": str(http_port), "AIRDISPLAY_REDIS_URL": redis_url}
    app = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airdisplay",
            "serve",
            "--runtime",
            "dapr",
            "--port",
            str(app_port),
            "--message-seconds",
            "2",
        ],
        env=env,
    )
    daprd = subprocess.Popen(
        [
            DAPRD,
            "--app-id",
            "airdisplay",
            "--app-port",
            str(app_port),
            "--dapr-http-port",
            str(http_port),
            "--dapr-grpc-port",
            str(grpc_port),
            "--resources-path",
            str(components),
        ],
    )
    try:
        deadline = time.monotonic() + 60
        wait_http(f"http://127.0.0.1:{app_port}/readyz", deadline)
        base = f"http://127.0.0.1:{app_port}"
        assert (
            httpx.post(f"{base}/api/v1/banners", json={"id": "e2e", "name": "E2E"}, timeout=30).status_code
            == 201
        )
        first = httpx.post(f"{base}/api/v1/banners/e2e/message", json={"text": "5m"}, timeout=30)
        second = httpx.post(f"{base}/api/v1/banners/e2e/message", json={"text": "other"}, timeout=30)
        assert (first.status_code, second.status_code) == (201, 409)
        assert first.json()["message"]["text"] == "5m"
        while time.monotonic() < deadline:
            if httpx.get(f"{base}/api/v1/banners/e2e", timeout=30).json()["message"] is None:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the message never expired")
    finally:
        for proc in (daprd, app):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
