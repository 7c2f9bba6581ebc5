"""Start-up in Dapr mode: a missing sidecar is one clear line and exit 2, and the SDK talks to our daprd."""

from __future__ import annotations

import subprocess
import sys
import time

from dapr.clients.http.helpers import get_api_url

from airdisplay.runtimes.dapr._local import free_port
from airdisplay.runtimes.dapr._preflight import SIDECAR_WAIT_SECONDS


def test_serve_without_a_sidecar_says_so_in_one_line_and_exits_2(tmp_path):
    port, dapr_port = free_port(), free_port()
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "airdisplay", "serve", "--runtime", "dapr", "--port", str(port)]
        + ["--dapr-http-port", str(dapr_port), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - started
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [
        line for line in result.stderr.splitlines() if line.startswith("airdisplay: error: daprd at ")
    ]
    assert len(errors) == 1 and f"127.0.0.1:{dapr_port}" in errors[0]
    assert "Traceback" not in result.stderr
    assert took < SIDECAR_WAIT_SECONDS + 10


async def test_the_sdk_calls_the_daprd_the_app_was_given_not_the_one_in_the_environment(
    start_server,
    monkeypatch,
):
    """DAPR_HTTP_PORT in the environment names another port; the SDK's own calls (state saves,
    reminders) must still go to the daprd of --dapr-http-port, like the app's."""
    monkeypatch.setenv("DAPR_HTTP_PORT", "1")
    server = await start_server(runtime="dapr")
    assert get_api_url() == f"{server.daprd.url}/v1.0"
