"""How the server logs: plain lines for a terminal (the default), or one JSON object a line for a collector.

JSON lines carry `time` (UTC, ISO 8601, milliseconds), `level`, `logger` and `message`, plus `banner_id`
when the line is about one banner (`extra=about(banner_id)` at the call), `trace_id` and `span_id` when
tracing is on and the line is logged inside a span (airdisplay/tracing.py), and `exception` with the
traceback when there is one. uvicorn's own lines (start-up, access log) go through the same handler.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from . import tracing

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def about(banner_id: str) -> dict[str, str]:
    """`extra` for a log call about one banner: its id becomes the JSON line's `banner_id`."""
    return {"banner_id": banner_id}


class JsonLines(JsonFormatter):
    """One JSON object a line: time, level, logger, message, and the record's extras (banner_id)."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
            json_ensure_ascii=False,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message: dict[str, Any]
    ) -> None:
        log_data["time"] = (
            datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        super().add_fields(log_data, record, message)
        if tracing.enabled:
            log_data.update(tracing.log_ids())


def configure_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    """Set the root logger's one handler up for `log_format`, "text" or "json" (`--log-format`); called
    again once the options are read."""
    logging.basicConfig(level=level, format=TEXT_FORMAT, force=True)
    if log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonLines())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per call to daprd otherwise
