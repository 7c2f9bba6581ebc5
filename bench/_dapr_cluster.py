"""The set-ups bench/dapr_compare.py measures side by side, and the HTTP client calls it drives them with.

A set-up is the embedded runtime (one `airdisplay serve` process) or a Dapr deployment of N replicas
(`LocalDapr` of airdisplay.runtimes.dapr: placement, scheduler, and per replica daprd + `airdisplay serve
--runtime dapr`) over a Redis of its own. Every process of a set-up runs on one CPU: the embedded server
through taskset, like the other benchmarks; LocalDapr starts its processes itself, so this process moves
its own main thread to that CPU while LocalDapr forks them (a child inherits the CPU affinity of the
thread that forks it) and moves back afterwards.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from _fleet import NO_SUBMIT_LIMIT, ServerProcess, airdisplay_command, free_port, pinned
from _report import cpu_seconds
from airdisplay.runtimes.dapr._local import LocalDapr, dapr_bin_dir, missing_binaries

#: Roles of a set-up's processes, in the order the CPU tables show them.
ROLES = ("app", "daprd", "redis", "scheduler", "placement")


@contextlib.contextmanager
def spawning_on(cpu: int | None) -> Iterator[None]:
    """Processes this thread starts meanwhile inherit `cpu` as their only CPU."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def cpus_allowed(pid: int) -> str:
    """The CPUs a process may run on (Cpus_allowed_list of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    return "?"


def children_named(names: set[str]) -> list[int]:
    """PIDs of this process's children whose command name is in `names`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text[text.find("(") + 1 : text.rfind(")")], text[text.rfind(")") + 2 :].split()
        if comm in names and int(rest[1]) == os.getpid():
            found.append(int(stat.parent.name))
    return found


class RedisServer:
    """redis-server on a free loopback port, nothing on disk (appendonly no, save "")."""

    def __init__(self, workdir: Path, cpu: int | None) -> None:
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(workdir)]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"]
        with (workdir / "redis.log").open("wb") as log:
            self.proc = subprocess.Popen(pinned(cpu, argv), stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start; see {workdir / 'redis.log'}") from None
                time.sleep(0.05)
        client.close()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


class SetUp:
    """One set-up under test: `start`, `urls`, `pids` by role, `stop_apps`/`start_apps`, `stop`."""

    def __init__(self, name: str, replicas: int, workdir: Path, cpu: int | None) -> None:
        self.name = name
        self.replicas = replicas  # 0: the embedded runtime
        self.workdir = workdir
        self.cpu = cpu
        self.redis: RedisServer | None = None
        self.dapr: LocalDapr | None = None
        self.server: ServerProcess | None = None
        self.port = 0
        self._serve: list[str] = []

    @property
    def is_dapr(self) -> bool:
        return self.replicas > 0

    def start(self, message_seconds: float) -> None:
        serve = ["--message-seconds", f"{message_seconds:g}", *NO_SUBMIT_LIMIT]
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.is_dapr:
            self.port = free_port()
            self._start_server(serve)
            return
        self.redis = RedisServer(self.workdir / "redis", self.cpu)
        self.dapr = LocalDapr(self.workdir / "dapr", self.redis.url, self.replicas, serve_args=tuple(serve))
        with spawning_on(self.cpu):
            self.dapr.start()

    def _start_server(self, serve: list[str]) -> None:
        argv = airdisplay_command() + ["serve", "--port", str(self.port)]
        argv += ["--data-dir", str(self.workdir / "data"), *serve]
        self.server = ServerProcess(self.name, pinned(self.cpu, argv), self.port, self.workdir / "serve.log")
        self._serve = serve
        self.server.start()
        self.server.wait_ready()

    @property
    def urls(self) -> list[str]:
        if self.dapr is not None:
            return [member.url for member in self.dapr.members]
        assert self.server is not None
        return [self.server.base_url]

    def pids(self) -> dict[str, list[int]]:
        """The live processes of the set-up by role (ROLES)."""
        if self.dapr is None:
            assert self.server is not None
            return {"app": [self.server.pid]}
        assert self.redis is not None
        members = self.dapr.members
        return {
            "app": [m.app.pid for m in members if m.app is not None],
            "daprd": [m.daprd.pid for m in members if m.daprd is not None],
            "redis": [self.redis.proc.pid],
            "scheduler": children_named({"scheduler"}),
            "placement": children_named({"placement"}),
        }

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds used so far by each role's processes."""
        return {role: sum(cpu_seconds(pid) for pid in pids) for role, pids in self.pids().items()}

    def affinity(self) -> str:
        """Where the set-up's processes may run, e.g. "app 0, daprd 0, redis 0, ..."."""
        return ", ".join(
            f"{role} {'/'.join(sorted({cpus_allowed(pid) for pid in pids}))}"
            for role, pids in self.pids().items()
        )

    def stop_apps(self) -> None:
        """Stop what runs the actors (the server; each replica's app and daprd), keeping state and Redis."""
        if self.dapr is not None:
            for member in self.dapr.members:
                self.dapr.stop_replica(member.index)
        elif self.server is not None:
            self.server.stop()

    def start_apps(self) -> None:
        """Start again what `stop_apps` stopped, on the same ports and data; returns once ready."""
        if self.dapr is None:
            self._start_server(self._serve)
            return
        with spawning_on(self.cpu):
            for member in self.dapr.members:
                self.dapr.start_replica(member.index)
        for member in self.dapr.members:
            self.dapr.wait_ready(member.index)

    def log_errors(self, lines: int = 12) -> str:
        """The last error lines (and what follows them) of the apps' logs, for a report of a failure."""
        if self.dapr is not None:
            logs = [self.dapr.tail(f"app-{m.index}", 400) for m in self.dapr.members]
        else:
            path = self.workdir / "serve.log"
            logs = [path.read_text(errors="replace")] if path.exists() else []
        found = []
        for log in logs:
            text = log.splitlines()
            first = next((i for i, line in enumerate(text) if "ERROR" in line or "Traceback" in line), None)
            if first is not None:
                found.append(" | ".join(text[first : first + lines]))
        return " || ".join(found)

    def stop(self) -> None:
        if self.dapr is not None:
            self.dapr.stop()
        if self.server is not None:
            self.server.stop()
        if self.redis is not None:
            self.redis.stop()


def dapr_versions() -> dict[str, str]:
    """Versions for the machine table: daprd, Redis, wrk."""

    def first_line(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except OSError:
            return "-"
        lines = (done.stdout or done.stderr).strip().splitlines()
        return lines[0] if lines else "-"

    return {
        "Dapr (daprd, placement, scheduler)": first_line([str(dapr_bin_dir() / "daprd"), "--version"]),
        "Redis": first_line(["redis-server", "--version"]),
        "wrk": first_line(["wrk", "--version"]),
    }


def missing_tools() -> list[str]:
    """What the comparison needs and cannot find: Dapr's binaries (`make dapr`), redis-server, wrk."""
    missing = [f"{name} (make dapr)" for name in missing_binaries()]
    return missing + [tool for tool in ("redis-server", "wrk") if not _on_path(tool)]


def _on_path(tool: str) -> bool:
    return any(os.access(Path(d) / tool, os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep))


class HttpPool:
    """Keep-alive HTTP/1.1 connections to one server, at most `size` in use at once.

    Far cheaper per request than an HTTP library, so that the client (on its own CPU) adds little to the
    latencies measured. It reads answers with a Content-Length only: every route it calls has one.
    """

    def __init__(self, url: str, size: int) -> None:
        host_port = url.removeprefix("http://").rstrip("/")
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._open: list[asyncio.StreamWriter] = []
        self._slots = asyncio.Semaphore(size)

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """(status, body) of one request. A kept connection the server closed meanwhile (uvicorn closes
        idle ones after 5 s) is replaced by a new one, once."""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        request = head.encode() + b"\r\n" + (body or b"")
        async with self._slots:
            while self._idle:
                connection = self._idle.pop()
                try:
                    return await self._exchange(connection, request)
                except (asyncio.IncompleteReadError, ConnectionError) as exc:
                    if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                        raise
            connection = await asyncio.open_connection(self.host, self.port)
            self._open.append(connection[1])
            return await self._exchange(connection, request)

    async def _exchange(
        self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
    ) -> tuple[int, bytes]:
        reader, writer = connection
        try:
            writer.write(request)
            header = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            status = int(header.split(" ", 2)[1])
            length = int(header.split("content-length:", 1)[1].split("\r\n", 1)[0])
            payload = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if "connection: close" in header:
            writer.close()
        else:
            self._idle.append(connection)
        return status, payload

    async def close(self) -> None:
        for writer in self._open:
            writer.close()
        self._idle.clear()


def _register_body(banner: str) -> bytes:
    return json.dumps({"id": banner, "name": f"Banner {banner}"}).encode()


async def register_all(pools: list[HttpPool], ids: list[str], concurrency: int) -> dict[int, int]:
    """Register banners as fast as the set-up takes them (`concurrency` at once); the answers by status."""
    statuses: collections.Counter[int] = collections.Counter()
    numbered = iter(enumerate(ids))

    async def worker() -> None:
        for i, banner in numbered:
            status, _ = await pools[i % len(pools)].request("POST", "/api/v1/banners", _register_body(banner))
            statuses[status] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return dict(statuses)


@dataclass
class Paced:
    """Requests sent at a fixed rate whatever the answers (open loop); latency from each planned send."""

    rate: float
    latencies: list[float] = field(default_factory=list)  # answer time - planned send time (s)
    lags: list[float] = field(default_factory=list)  # actual send - planned send: the client's own delay
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    seconds: float = 0.0  # first planned send to last answer


async def paced_register(pools: list[HttpPool], ids: list[str], rate: float) -> Paced:
    """Register `ids` at `rate` a second, spread over the pools in turn (status 0: connection failed).

    Latency counts from when a request was due to go, so a set-up that falls behind shows its backlog
    instead of slowing the sender down (no coordinated omission).
    """
    paced = Paced(rate)
    clock = time.perf_counter  # uvloop's loop.time() counts whole milliseconds

    async def one(i: int, banner: str, planned: float) -> None:
        try:
            status, _ = await pools[i % len(pools)].request("POST", "/api/v1/banners", _register_body(banner))
        except OSError:
            status = 0
        paced.latencies.append(clock() - planned)
        paced.statuses[status] += 1

    start = clock() + 0.05
    tasks = []
    for i, banner in enumerate(ids):
        planned = start + i / rate
        if (delay := planned - clock()) > 0:
            await asyncio.sleep(delay)
        paced.lags.append(clock() - planned)
        tasks.append(asyncio.create_task(one(i, banner, planned)))
    await asyncio.gather(*tasks)
    paced.seconds = clock() - start
    return paced


async def submit_all(
    pools: list[HttpPool], ids: list[str], concurrency: int
) -> tuple[dict[str, float], dict[int, int]]:
    """POST a message to every banner (`concurrency` at once): expires_at (epoch s) of each 201, statuses."""
    due: dict[str, float] = {}
    statuses: collections.Counter[int] = collections.Counter()
    numbered = iter(enumerate(ids))
    body = b'{"text":"hello"}'

    async def worker() -> None:
        for i, banner in numbered:
            status, answer = await pools[i % len(pools)].request(
                "POST", f"/api/v1/banners/{banner}/message", body
            )
            statuses[status] += 1
            if status == 201:
                due[banner] = epoch(json.loads(answer)["message"]["expires_at"])

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return due, dict(statuses)


async def fleet(pool: HttpPool) -> dict[str, dict[str, Any]]:
    """Every banner of the fleet listing (`GET /api/v1/banners`, pages of 500) by id."""
    banners: dict[str, dict[str, Any]] = {}
    after = ""
    while True:
        status, body = await pool.request(
            "GET", "/api/v1/banners?limit=500" + (f"&after={after}" if after else "")
        )
        if status != 200:
            raise RuntimeError(f"the fleet listing answered {status}: {body[:200]!r}")
        page = json.loads(body)
        banners.update((item["id"], item) for item in page["items"])
        after = page["next_after"] or ""
        if not after:
            return banners


def epoch(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 time as the API writes it (UTC, `Z`)."""
    return datetime.fromisoformat(text).timestamp()
