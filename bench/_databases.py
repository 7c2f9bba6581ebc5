"""PostgreSQL and Redis servers for bench/alternatives.py: found (or installed with apt), started on a free
127.0.0.1 port in a temporary directory, seeded, and stopped by their PIDs."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import redis

from _fleet import ServerProcess, banner_id, free_port, pinned

#: Debian packages of the tools the comparison needs, by the program looked for.
PACKAGES = {"postgres": "postgresql", "redis-server": "redis-server", "wrk": "wrk"}


def postgres_bin() -> Path | None:
    """The directory of `postgres`, `initdb`: on PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    found = shutil.which("postgres")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def missing_tools() -> list[str]:
    missing = [tool for tool in ("redis-server", "wrk") if shutil.which(tool) is None]
    return (["postgres"] if postgres_bin() is None else []) + missing


def ensure_tools() -> None:
    """Install PostgreSQL, Redis and wrk with apt when missing and running as root; else say what to do."""
    missing = missing_tools()
    if not missing:
        return
    packages = [PACKAGES[tool] for tool in missing]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(f"missing {', '.join(missing)}: install them, e.g. apt-get install -y {' '.join(packages)}")
    print(f"installing {' '.join(packages)} with apt-get ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    # Debian's postgresql package starts a cluster of its own on port 5432; the bench uses its own.
    subprocess.run(
        ["apt-get", "install", "-y", "-q", *packages], check=True, env=env, stdout=subprocess.DEVNULL
    )
    if missing_tools():
        sys.exit(f"still missing after apt-get: {', '.join(missing_tools())}")


def versions() -> dict[str, str]:
    """Versions of the database servers and wrk, for the machine table."""
    pg = postgres_bin()

    def first_line(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except OSError:
            return "-"
        return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else "-"

    return {
        "PostgreSQL": first_line([str(pg / "postgres"), "--version"]) if pg else "-",
        "Redis": first_line(["redis-server", "--version"]),
        "wrk": first_line(["wrk", "--version"]),
    }


def _as_postgres_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user (exec, same PID)."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *argv]


def start_postgres(tmp: Path, cpu: int | None) -> tuple[ServerProcess, str]:
    """initdb in `tmp`/pg and start postgres on a free loopback port, durable settings; (server, DSN)."""
    pg = postgres_bin()
    assert pg is not None
    data = tmp / "pg"
    data.mkdir()
    if os.geteuid() == 0:
        os.chmod(tmp, 0o711)  # the postgres user must reach its data directory
        shutil.chown(data, "postgres", "postgres")
    initdb = [
        str(pg / "initdb"),
        "-D",
        str(data),
        "-U",
        "bench",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--no-instructions",
    ]
    subprocess.run(_as_postgres_user(initdb), check=True, capture_output=True)
    port = free_port()
    settings = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(data),
        # Equal durability to AirDisplay's SQLite synchronous=FULL: every COMMIT waits for its fsync.
        "fsync": "on",
        "synchronous_commit": "on",
        "full_page_writes": "on",
        "shared_buffers": "256MB",
        "max_connections": "100",
        "log_min_messages": "warning",
    }
    argv = [str(pg / "postgres"), "-D", str(data), "-p", str(port)]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    server = ServerProcess("PostgreSQL", pinned(cpu, _as_postgres_user(argv)), port, tmp / "postgres.log")
    server.start()
    dsn = f"postgresql://bench@127.0.0.1:{port}/postgres"
    _wait(server, lambda: asyncio.run(_pg_ping(dsn)))
    return server, dsn


async def _pg_ping(dsn: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=2)
    await conn.close()


def start_redis(tmp: Path, cpu: int | None, appendfsync: str) -> tuple[ServerProcess, str]:
    """redis-server on a free loopback port with an append-only file in `tmp`; (server, URL)."""
    data = tmp / f"redis-{appendfsync}"
    data.mkdir()
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data)]
    argv += ["--save", "", "--appendonly", "yes", "--appendfsync", appendfsync, "--daemonize", "no"]
    argv += ["--notify-keyspace-events", "Ex", "--loglevel", "warning"]
    server = ServerProcess(
        f"Redis ({appendfsync})", pinned(cpu, argv), port, tmp / f"redis-{appendfsync}.log"
    )
    server.start()
    url = f"redis://127.0.0.1:{port}/0"
    _wait(server, lambda: redis.Redis.from_url(url, socket_timeout=2).ping())
    return server, url


def _wait(server: ServerProcess, probe: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert server.proc is not None
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}; see {server.log_path}")
        try:
            probe()  # type: ignore[operator]
            return
        except Exception:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.1)
        except BaseException:
            server.stop()
            raise


async def seed_postgres(dsn: str, count: int) -> None:
    """Banners b0000000.. with the ids bench/_fleet.py gives AirDisplay's (the app made the table)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO banners (id, name) SELECT 'b' || lpad(g::text, 7, '0'), 'Banner ' || g "
            "FROM generate_series(0, $1 - 1) g ON CONFLICT DO NOTHING",
            count,
        )
        await conn.execute("VACUUM ANALYZE banners")
    finally:
        await conn.close()


def seed_redis(url: str, count: int, chunk: int = 10_000) -> None:
    client = redis.Redis.from_url(url)
    for start in range(0, count, chunk):
        pipe = client.pipeline(transaction=False)
        for number in range(start, min(start + chunk, count)):
            pipe.hset(f"banner:{banner_id(number)}", mapping={"name": f"Banner {number}", "version": 1})
        pipe.execute()
    client.close()


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (PostgreSQL's backends are the postmaster's children)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree
