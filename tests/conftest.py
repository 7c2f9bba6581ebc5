"""Shared test helpers: waiting on conditions instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

#: Upper bound for any condition a test waits on; generous for a loaded 2-core CI machine.
WAIT_LIMIT = 15.0


async def eventually(
    predicate: Callable[[], bool], *, limit: float = WAIT_LIMIT, what: str = "condition"
) -> None:
    """Wait until `predicate()` holds, checking often; fail with `what` after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit}s waiting for {what}")
        await asyncio.sleep(0.005)
