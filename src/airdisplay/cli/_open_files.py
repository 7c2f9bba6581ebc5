"""The open-file limit: raised to the hard limit at start, and the room it leaves for connections logged.

Each connection holds a file. The common soft default of 1,024 let 1,100 idle connections from one
client take them all, so that the server answered no health probe (issue 18); the hard limit is commonly
4,096 to 1,048,576, and a process may raise its soft limit up to it.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("airdisplay")

#: Soft limits tried in turn when the hard one is unlimited (macOS: the kernel's maximum is lower).
UNLIMITED_TRIES = (1 << 20, 1 << 16, 10240)
#: Open files the server keeps for itself (database, its WAL, logs, the event loop's own) besides sockets.
RESERVED_FILES = 64


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft limit of open files to the hard one: (before, after). Under an unlimited hard limit
    (macOS) the kernel's own maximum still applies: the values of UNLIMITED_TRIES are tried in turn."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return soft, soft
    for limit in [hard] if hard != resource.RLIM_INFINITY else UNLIMITED_TRIES:
        if limit <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        except (ValueError, OSError):
            continue
        return soft, limit
    return soft, soft


def log_connection_capacity(per_client: int) -> int | None:
    """Raise the open-file limit and log how many connections it leaves room for, warning when one client
    (`per_client` connections at most; 0: no limit) may take half: that number (None: no limit)."""
    before, after = raise_open_file_limit()
    cap = (
        f"at most {per_client:,} per client address (--max-connections-per-client)"
        if per_client
        else "no limit per client address"
    )
    if after == resource.RLIM_INFINITY:
        log.info("no open-file limit; %s", cap)
        return None
    capacity = max(after - RESERVED_FILES, 0)
    raised = f" (raised from {before})" if after != before else ""
    log.info("open-file limit %d%s: room for about %s connections, %s", after, raised, f"{capacity:,}", cap)
    if per_client and per_client * 2 > capacity:
        log.warning(
            "one client address may take %s of the room for %s connections: raise the hard open-file "
            "limit (ulimit -Hn; LimitNOFILE= under systemd) or lower --max-connections-per-client",
            "all" if per_client >= capacity else "more than half",
            f"{capacity:,}",
        )
    return capacity
