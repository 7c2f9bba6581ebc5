"""`--log-format json`: one JSON object a line, uvicorn's lines included; text stays the default."""

from __future__ import annotations

import json
import logging
import os
import sys

import httpx

from airdisplay.logs import JsonLines, about
from tests.conftest import free_port, refused_line, spawn, stop, wait_ready


def test_a_json_server_writes_only_json_lines_with_time_level_logger_and_message(tmp_path):
    port = free_port()
    proc = spawn("--port", str(port), "--data-dir", str(tmp_path), "--log-format", "json", "--access-log")
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}")
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/banners/nobody").status_code == 404
    finally:
        output = stop(proc)
    lines = [json.loads(line) for line in output.splitlines()]  # each line is one JSON object
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys()
        assert line["time"].endswith("Z")
    messages = {(line["logger"], line["message"]) for line in lines}
    assert any(logger == "airdisplay" and "open-file limit" in text for logger, text in messages)
    assert ("uvicorn.error", "Application startup complete.") in messages  # uvicorn's own lines too
    assert any(logger == "uvicorn.access" and "/api/v1/banners/nobody" in text for logger, text in messages)


def test_text_stays_the_default(tmp_path):
    port = free_port()
    proc = spawn("--port", str(port), "--data-dir", str(tmp_path))
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}")
    finally:
        output = stop(proc)
    assert "INFO airdisplay: open-file limit" in output
    assert not output.lstrip().startswith("{")


def test_a_bad_log_format_is_refused_in_one_line(tmp_path):
    line = refused_line(
        "--data-dir", str(tmp_path), "--log-format", "xml", env={**os.environ, "AIRDISPLAY_OPERATOR_KEY": ""}
    )
    assert "--log-format" in line and "xml" in line


def test_a_line_about_a_banner_carries_its_id_and_an_exception_its_traceback():
    formatter = JsonLines()
    record = logging.LogRecord(
        "airdisplay.devices", logging.WARNING, __file__, 1, "link of %s", ("b-1",), None
    )
    record.__dict__.update(about("b-1"))
    line = json.loads(formatter.format(record))
    assert line["banner_id"] == "b-1" and line["message"] == "link of b-1" and line["level"] == "WARNING"
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed: ü", (), sys.exc_info())
    line = json.loads(formatter.format(failed))
    assert "ValueError: boom" in line["exception"] and line["message"] == "failed: ü"
    assert "banner_id" not in line
