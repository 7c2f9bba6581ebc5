"""`airdisplay simulate` as a real process: a failure is one line on stderr and exit 2, never a traceback;
Ctrl+C ends a run with its report."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys

import pytest

SIMULATE = [sys.executable, "-m", "airdisplay", "simulate"]
OPERATOR_KEY = "operator-key-of-the-simulator-tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment() -> dict[str, str]:
    """This process's environment without a key the developer may have exported."""
    return {k: v for k, v in os.environ.items() if k not in ("AIRDISPLAY_OPERATOR_KEY", "AIRDISPLAY_API_KEY")}


async def simulate(*args: str) -> tuple[int, str, str]:
    """Run `airdisplay simulate` to its end: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        *SIMULATE,
        *args,
        env=environment(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_no_server_is_one_line_and_exit_2():
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = await simulate("--url", url, "--banners", "50", "--create", "--duration", "1")
    assert code == 2
    assert out == ""
    assert err.splitlines() == [
        f"airdisplay: error: cannot reach an AirDisplay server at {url}: connection refused; "
        "start one with 'airdisplay serve' (or 'make run') or pass its address with --url"
    ]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (None, "registering banners needs an operator key"),
        ("not-a-key-of-this-server", "the server refused the key"),
    ],
    ids=["no key", "wrong key"],
)
async def test_create_without_a_valid_operator_key_is_one_line_and_exit_2(
    start_server,
    key,
    expected,
):
    server = await start_server(api_key=OPERATOR_KEY)
    args = ["--url", server.url, "--banners", "200", "--create", "--duration", "1"]
    code, out, err = await simulate(*args, *(["--api-key", key] if key else []))
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err  # no "Task exception was never retrieved" for the other 199 set-up calls
    assert lines[0].startswith("airdisplay: error: ") and expected in lines[0]
    assert "airdisplay keys create --role operator" in lines[0]
    listing = await server.client.get("/api/v1/banners")
    assert listing.json()["items"] == []


async def test_unregistered_banners_without_create_is_one_line_and_exit_2(start_server):
    server = await start_server()
    code, out, err = await simulate("--url", server.url, "--banners", "20", "--duration", "1")
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert re.search(r"banner sim-\d\d is not registered; pass --create", lines[0]), lines[0]


async def test_ctrl_c_ends_the_run_with_its_report(start_server):
    server = await start_server()
    proc = await asyncio.create_subprocess_exec(
        *SIMULATE,
        "--url",
        server.url,
        "--banners",
        "3",
        "--create",
        env=environment(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        seen: list[str] = []
        while not any("until Ctrl+C" in line for line in seen):
            line = await proc.stderr.readline()
            assert line, f"simulate ended early: {seen}"
            seen.append(line.decode())
        proc.send_signal(signal.SIGINT)
        out, err = await proc.communicate()
    finally:
        if proc.returncode is None:  # the test failed half-way: leave no simulator behind
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, "".join(seen) + err.decode()
    summary = json.loads(out)
    assert summary["banners"] == 3 and summary["connected"] == 3
    assert "Traceback" not in err.decode()
