"""A whole Dapr deployment on this machine: placement, scheduler and N replicas of daprd + AirDisplay.

`airdisplay dapr local` runs it for people; the real-daprd tests run the same code. Everything listens on
127.0.0.1; placement, scheduler and each daprd get free ports (both control-plane services default to
healthz 8080 and metrics 9090, so every port is set). Redis is the operator's: its URL goes into the
components (copied from this package's components/ with the host and password filled in) and to the apps.

Binaries come from `make dapr` (deploy/dapr/build/build.sh): AIRDISPLAY_DAPR_BIN, else the build cache.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

#: The Dapr version deploy/dapr/build builds; it pairs with the pinned Python SDK (dapr 1.19 supports
#: runtime 1.18+, and 1.18.3 is the newest release the Go module proxy serves).
DAPR_VERSION = "v1.18.3"
COMPONENTS = Path(__file__).with_name("components")
APP_ID = "airdisplay"
#: Placement, scheduler and daprd each come up within a few seconds on a loaded 2-core machine.
START_SECONDS = 60.0


def dapr_bin_dir() -> Path:
    """Where daprd, placement and scheduler are: AIRDISPLAY_DAPR_BIN, else the cache `make dapr` fills."""
    if explicit := os.environ.get("AIRDISPLAY_DAPR_BIN"):
        return Path(explicit)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "airdisplay" / "dapr" / DAPR_VERSION


def missing_binaries(bin_dir: Path | None = None) -> list[str]:
    where = bin_dir or dapr_bin_dir()
    return [name for name in ("daprd", "placement", "scheduler") if not os.access(where / name, os.X_OK)]


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int, taken: Iterable[int] = ()) -> list[int]:
    """`count` distinct free ports, none of them in `taken`. All are held open until every one is picked:
    one at a time, the kernel may hand out a port it just gave (an app once got its daprd's metrics port
    and answered a POST with daprd's metrics)."""
    held: list[socket.socket] = []
    ports: list[int] = []
    avoid = set(taken)
    try:
        while len(ports) < count:
            sock = socket.socket()
            held.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            if port not in avoid:
                avoid.add(port)
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def write_components(redis_url: str, target: Path) -> None:
    """Copy the package's components into `target` with this Redis's host, port and password."""
    url = urlsplit(redis_url)
    host = f"{url.hostname or '127.0.0.1'}:{url.port or 6379}"
    password = url.password or ""
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted(COMPONENTS.glob("*.yaml")):
        text = source.read_text().replace("localhost:6379", host)
        text = text.replace(
            'name: redisPassword\n      value: ""', f'name: redisPassword\n      value: "{password}"'
        )
        (target / source.name).write_text(text)


@dataclass
class Replica:
    """One AirDisplay process and its daprd."""

    index: int
    app_port: int
    http_port: int
    grpc_port: int
    internal_port: int
    metrics_port: int
    app: subprocess.Popen[bytes] | None = None
    daprd: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    @property
    def dapr_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def running(self) -> bool:
        return all(p is not None and p.poll() is None for p in (self.app, self.daprd))


@dataclass
class LocalDapr:
    """Start with `start()`; `kill(i)` is a kill -9 of replica i and its daprd; `stop()` ends everything."""

    workdir: Path
    redis_url: str
    replicas: int = 2
    #: Port of replica 0's app; replica i serves on base_port + i. 0: free ports.
    base_port: int = 0
    #: Extra `airdisplay serve` options for every replica.
    serve_args: tuple[str, ...] = ()
    #: Extra environment for every replica (OTEL_* for tracing, say).
    app_env: dict[str, str] = field(default_factory=dict)
    bin_dir: Path = field(default_factory=dapr_bin_dir)
    app_id: str = APP_ID
    members: list[Replica] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._control: list[subprocess.Popen[bytes]] = []
        self.logs = self.workdir / "logs"
        self.ports = self._ports()

    def _ports(self) -> dict[str, int]:
        """The control plane's ports, kept in the work dir: the scheduler's embedded etcd records its
        peer address in its data, so a restart on the same work dir must use the same ports."""
        path = self.workdir / "ports.json"
        if path.exists():
            return {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
        names = ["placement", "placement_health", "placement_metrics", "placement_raft", "scheduler"]
        names += ["scheduler_health", "scheduler_metrics", "etcd_client", "etcd_peer"]
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.workdir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ports))
        return ports

    @property
    def placement_port(self) -> int:
        return self.ports["placement"]

    @property
    def scheduler_port(self) -> int:
        return self.ports["scheduler"]

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        if missing := missing_binaries(self.bin_dir):
            raise FileNotFoundError(
                f"{', '.join(missing)} not found in {self.bin_dir}: build them with 'make dapr' "
                "(deploy/dapr/build/build.sh) or set AIRDISPLAY_DAPR_BIN"
            )
        self.logs.mkdir(parents=True, exist_ok=True)
        write_components(self.redis_url, self.workdir / "components")
        self.start_control_plane()
        for index in range(self.replicas):
            self.members.append(self._replica_ports(index))
        for replica in self.members:
            self.start_replica(replica.index)
        for replica in self.members:
            self.wait_ready(replica.index)

    def start_control_plane(self) -> None:
        p = self.ports
        self._control = [
            self._spawn(
                "placement",
                [
                    str(self.bin_dir / "placement"),
                    *("--port", str(p["placement"]), "--listen-address", "127.0.0.1"),
                    *("--healthz-port", str(p["placement_health"]), "--healthz-listen-address", "127.0.0.1"),
                    *("--metrics-port", str(p["placement_metrics"]), "--metrics-listen-address", "127.0.0.1"),
                    *("--initial-cluster", f"dapr-placement-0=127.0.0.1:{p['placement_raft']}"),
                ],
            ),
            self._spawn(
                "scheduler",
                [
                    str(self.bin_dir / "scheduler"),
                    *("--port", str(p["scheduler"]), "--listen-address", "127.0.0.1"),
                    *("--healthz-port", str(p["scheduler_health"]), "--healthz-listen-address", "127.0.0.1"),
                    *("--metrics-port", str(p["scheduler_metrics"]), "--metrics-listen-address", "127.0.0.1"),
                    *("--etcd-data-dir", str(self.workdir / "scheduler-etcd")),
                    *(
                        "--etcd-client-port",
                        str(p["etcd_client"]),
                        "--etcd-client-listen-address",
                        "127.0.0.1",
                    ),
                    *("--etcd-initial-cluster", f"dapr-scheduler-server-0=http://127.0.0.1:{p['etcd_peer']}"),
                    *("--override-broadcast-host-port", f"127.0.0.1:{p['scheduler']}"),
                ],
            ),
        ]
        for name in ("placement", "scheduler"):
            self._wait_http(f"http://127.0.0.1:{p[name + '_health']}/healthz", name)

    def start_replica(self, index: int) -> Replica:
        """Start (or start again, on the same ports) replica `index`: daprd first, then the app."""
        replica = self.members[index]
        replica.daprd, _ = self.spawn_daprd(
            self.app_id,
            replica.app_port,
            ports=(replica.http_port, replica.grpc_port, replica.internal_port, replica.metrics_port),
            name=f"daprd-{index}",
        )
        replica.app = self._spawn(
            f"app-{index}",
            [
                sys.executable,
                *("-m", "airdisplay", "serve", "--runtime", "dapr", "--host", "127.0.0.1"),
                *("--port", str(replica.app_port), "--dapr-http-port", str(replica.http_port)),
                *("--redis-url", self.redis_url, "--data-dir", str(self.workdir / f"replica-{index}")),
                *self.serve_args,
            ],
            env={**self.app_env, "DAPR_HTTP_PORT": str(replica.http_port)},
        )
        return replica

    def spawn_daprd(
        self,
        app_id: str,
        app_port: int,
        *,
        ports: tuple[int, int, int, int] | None = None,
        resources: Path | None = None,
        name: str | None = None,
        env: dict[str, str] | None = None,
    ) -> tuple[subprocess.Popen[bytes], int]:
        """Start a daprd for the app on `app_port`, joined to this control plane; return it and its HTTP port.

        `ports` (HTTP, gRPC, internal gRPC, metrics) default to free ones; `resources` to the work dir's
        components; the log is `<name>.log` (default `daprd-<app_id>`) in the logs dir.
        """
        http, grpc, internal, metrics = ports or free_ports(4, taken=[app_port, *self.ports.values()])
        self.logs.mkdir(parents=True, exist_ok=True)
        daprd = self._spawn(
            name or f"daprd-{app_id}",
            [
                str(self.bin_dir / "daprd"),
                *("--mode", "standalone", "--app-id", app_id, "--app-protocol", "http"),
                *("--app-port", str(app_port), "--app-channel-address", "127.0.0.1"),
                *("--dapr-http-port", str(http), "--dapr-grpc-port", str(grpc)),
                *("--dapr-internal-grpc-port", str(internal)),
                *("--dapr-listen-addresses", "127.0.0.1", "--metrics-port", str(metrics)),
                *("--placement-host-address", f"127.0.0.1:{self.placement_port}"),
                *("--scheduler-host-address", f"127.0.0.1:{self.scheduler_port}"),
                *("--resources-path", str(resources or self.workdir / "components")),
                *("--enable-app-health-check", "--app-health-check-path", "/healthz"),
                *("--log-level", "warn"),
            ],
            # No default route on such hosts: daprd cannot guess its own address.
            env={"DAPR_HOST_IP": "127.0.0.1", **(env or {})},
        )
        return daprd, http

    def _replica_ports(self, index: int) -> Replica:
        names = [f"{kind}_{index}" for kind in ("app", "http", "grpc", "internal", "metrics")]
        if names[0] not in self.ports:
            self.ports.update(zip(names, free_ports(len(names), taken=self.ports.values()), strict=True))
            if self.base_port:
                self.ports[names[0]] = self.base_port + index
            (self.workdir / "ports.json").write_text(json.dumps(self.ports))
        app, http, grpc, internal, metrics = (self.ports[name] for name in names)
        return Replica(index, app, http, grpc, internal, metrics)

    def wait_ready(self, index: int, limit: float = START_SECONDS) -> None:
        """Until the app is ready and its daprd is healthy (app channel up, actors registered)."""
        replica = self.members[index]
        self._wait_http(f"{replica.url}/readyz", f"app-{index}", limit)
        self._wait_http(f"{replica.dapr_url}/v1.0/healthz", f"daprd-{index}", limit)

    def kill(self, index: int) -> None:
        """kill -9 of the replica's app and its daprd, as a machine failure would."""
        replica = self.members[index]
        for proc in (replica.app, replica.daprd):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    def stop_replica(self, index: int) -> None:
        """A graceful stop (SIGTERM) of daprd, then of its app: daprd halts its actors through the app."""
        replica = self.members[index]
        for proc in (replica.daprd, replica.app):
            _terminate(proc)

    def stop(self) -> None:
        for replica in self.members:
            self.stop_replica(replica.index)
        for proc in reversed(self._control):
            _terminate(proc)
        self._control = []

    # -- internals ---------------------------------------------------------------------------------

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        try:
            return subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=self.workdir,
                start_new_session=True,  # Ctrl-C in the launcher's terminal stops them in order, not at once
            )
        finally:
            log.close()

    def _wait_http(self, url: str, name: str, limit: float = START_SECONDS) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=1.0).status_code < 300:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(
            f"{name} did not become ready at {url} within {limit:g} s; see {self.logs}/{name}.log"
        )

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _terminate(proc: subprocess.Popen[bytes] | None, grace: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
