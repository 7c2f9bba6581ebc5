"""One server (or import) per data directory, as real processes: a second is refused in one line, exit 2,
naming the holder's pid; kill -9 of the holder leaves no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from airdisplay.actors._lock import StoreLock
from tests.conftest import AIRDISPLAY, free_port, spawn, stop, wait_ready


def airdisplay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AIRDISPLAY, *args], capture_output=True, text=True, timeout=30)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a refused command prints (and nothing else), after checking its exit code."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def running_server(tmp_path):
    """A real server on `tmp_path / "data"`; yields (process, url)."""
    port = free_port()
    proc = spawn("--port", str(port), "--data-dir", str(tmp_path / "data"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url)
        yield proc, url
    finally:
        stop(proc)


@pytest.mark.slow
def test_second_server_on_a_data_directory_is_refused_naming_the_first(tmp_path, running_server):
    first, url = running_server
    second = airdisplay("serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "data"))
    line = one_error_line(second)
    assert f"pid {first.pid}" in line and "in use" in line and "--data-dir" in line
    assert httpx.get(f"{url}/readyz").status_code == 200  # the first one is unharmed


@pytest.mark.slow
def test_import_is_refused_while_a_server_runs_and_imports_nothing(tmp_path, running_server):
    server, url = running_server
    fleet = tmp_path / "fleet.csv"
    fleet.write_text("id,name\nimp1,Imported\n")
    tokens = tmp_path / "tokens.csv"
    refused = airdisplay(
        "banners", "import", str(fleet), "--data-dir", str(tmp_path / "data"), "--tokens-out", str(tokens)
    )
    line = one_error_line(refused)
    assert f"pid {server.pid}" in line and "nothing was imported" in line
    assert httpx.get(f"{url}/api/v1/banners/imp1").status_code == 404
    assert not tokens.exists() and not tokens.with_name("tokens.csv.partial").exists()


@pytest.mark.slow
def test_a_server_killed_with_kill_9_leaves_the_data_directory_free(tmp_path):
    data_dir = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    killed = spawn("--port", str(port), "--data-dir", str(data_dir))
    try:
        wait_ready(killed, url)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)
    finally:
        stop(killed)
    assert (data_dir / "airdisplay.db.lock").read_text().strip() == str(killed.pid)  # a stale pid, no lock
    successor = spawn("--port", str(port), "--data-dir", str(data_dir))
    try:
        wait_ready(successor, url)
        httpx.post(f"{url}/api/v1/banners", json={"id": "after", "name": "After"}).raise_for_status()
    finally:
        stop(successor)


def test_a_server_will_not_start_on_a_store_another_process_holds(tmp_path):
    """The holder here is this test process, standing in for an import in progress."""
    data_dir: Path = tmp_path / "data"
    with StoreLock(data_dir / "airdisplay.db"):
        refused = airdisplay("serve", "--port", str(free_port()), "--data-dir", str(data_dir))
    assert f"pid {os.getpid()}" in one_error_line(refused)
    assert not (data_dir / "airdisplay.db").exists()  # refused before the store was opened
