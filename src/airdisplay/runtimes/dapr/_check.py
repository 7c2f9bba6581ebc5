"""`airdisplay dapr check`: find the mistakes people make with Dapr configuration before daprd starts.

Each finding names the file and the fix. Errors make the check fail; warnings do not. The Kubernetes
manifests are read by `_check_k8s`, which reuses the component checks here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from ...config import Settings

COMPONENT_API_VERSION = "dapr.io/v1alpha1"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: Templated consumer ids that differ per sidecar, so every replica receives every event.
_PER_REPLICA = ("{uuid}", "{podName}")
#: A new consumer group reads the stream from id 0; a replay of this many events at start is harmless
#: (subscribers drop versions they already have), so a cap this small does the work of streamTTL.
_SMALL_MAX_LEN = 1000
#: Where `dapr init` starts placement and scheduler; the Dapr CLI falls back to these.
DEFAULT_PLACEMENT = "localhost:50005"
DEFAULT_SCHEDULER = "localhost:50006"
#: host:port as daprd takes it for placement and scheduler: a DNS name or address, or [IPv6].
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?):([0-9]{1,5})$")
#: The Dapr CLI's log destinations for a run file, and its defaults (app: fileAndConsole, daprd: file).
_LOG_DESTINATIONS = ("file", "console", "fileAndConsole")
_LOG_DEFAULTS = {"appLogDestination": "fileAndConsole", "daprdLogDestination": "file"}


@dataclass(frozen=True)
class Finding:
    """One problem: `where` is a file (or setting), `message` says what is wrong and how to fix it."""

    level: Literal["error", "warning"]
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.level.upper()}: {self.where}: {self.message}"


@dataclass(frozen=True)
class Expectations:
    """What this AirDisplay will do, to be matched by the Dapr set-up."""

    pubsub: str = Settings.default("dapr_pubsub")
    topic: str = Settings.default("dapr_topic")
    app_port: int = 8000
    #: The port daprd was told the app listens on (APP_PORT / --app-port), when known.
    dapr_app_port: int | None = None
    dapr_http_port: str | None = None
    #: daprd's --placement-host-address and --scheduler-host-address, when given.
    placement_host_address: str | None = None
    scheduler_host_address: str | None = None


def check_dapr_setup(
    resources: Path, expect: Expectations, run_file: Path | None = None, k8s: Path | None = None
) -> list[Finding]:
    """All findings for components, optional `dapr run -f` file and Kubernetes manifests, and settings."""
    findings: list[Finding] = []
    check_components(load_components(resources, findings), expect, findings)
    if run_file is not None:
        _check_run_file(run_file, findings)
    if k8s is not None:
        # Imported here: _check_k8s builds on this module's component checks.
        from ._check_k8s import check_k8s_manifests

        findings.extend(check_k8s_manifests(k8s, expect))
    addresses = {
        "--placement-host-address": (expect.placement_host_address, DEFAULT_PLACEMENT),
        "--scheduler-host-address": (expect.scheduler_host_address, DEFAULT_SCHEDULER),
    }
    for flag, (address, example) in addresses.items():
        if address is not None and not is_host_port(address):
            findings.append(
                Finding("error", flag, f"{address!r} is not host:port with a port 1-65535, e.g. {example}")
            )
    if expect.dapr_app_port is not None and expect.dapr_app_port != expect.app_port:
        findings.append(
            Finding(
                "error",
                "app port",
                f"daprd sends calls to port {expect.dapr_app_port} but AirDisplay listens on "
                f"{expect.app_port}: make daprd's --app-port (APP_PORT, dapr.io/app-port) equal to "
                "airdisplay serve --port",
            )
        )
    if expect.dapr_http_port is not None and not expect.dapr_http_port.isdigit():
        findings.append(
            Finding(
                "error",
                "DAPR_HTTP_PORT",
                f"{expect.dapr_http_port!r} is not a port number (daprd default: 3500)",
            )
        )
    # Replicas that share an appID give the same findings: report each once.
    return list(dict.fromkeys(findings))


def is_host_port(address: str) -> bool:
    """Whether `address` is host:port (or a comma-separated list of them) with ports 1-65535."""
    matches = [_HOST_PORT.match(part.strip()) for part in address.split(",")]
    return all(m is not None and 1 <= int(m.group(3)) <= 65535 for m in matches)


def load_documents(
    directory: Path, findings: list[Finding], flag: str, kinds: tuple[str, ...]
) -> list[tuple[str, dict[str, Any]]]:
    """The YAML documents of the given kinds in `directory`, each with its file; problems become findings."""
    if not directory.is_dir():
        findings.append(Finding("error", str(directory), f"no such directory: pass {flag} DIR"))
        return []
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        findings.append(Finding("error", str(directory), "holds no .yaml files"))
    loaded: list[tuple[str, dict[str, Any]]] = []
    for path in files:
        try:
            documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as exc:
            findings.append(Finding("error", str(path), f"is not valid YAML: {exc}"))
            continue
        for document in documents:
            if not isinstance(document, dict):
                findings.append(Finding("error", str(path), "a document is not a mapping"))
            elif document.get("kind") in kinds:
                loaded.append((str(path), document))
    return loaded


def load_components(resources: Path, findings: list[Finding]) -> list[tuple[str, dict[str, Any]]]:
    """The Dapr Component documents of a resources directory."""
    return load_documents(resources, findings, "--resources-path", ("Component",))


def component_metadata(document: dict[str, Any]) -> dict[str, Any]:
    """A component's metadata items by name: the value, or the secretKeyRef mapping."""
    items = (document.get("spec") or {}).get("metadata") or []
    found: dict[str, Any] = {}
    for item in items:
        if isinstance(item, dict) and "name" in item:
            found[str(item["name"])] = item.get("value", item.get("secretKeyRef"))
    return found


def check_components(
    components: list[tuple[str, dict[str, Any]]], expect: Expectations, findings: list[Finding]
) -> None:
    """The checks every set of components must pass, local or on Kubernetes."""
    actor_stores: list[str] = []
    pubsubs: dict[str, tuple[str, dict[str, Any]]] = {}
    for where, document in components:
        name = str((document.get("metadata") or {}).get("name", ""))
        spec = document.get("spec") or {}
        kind = str(spec.get("type", ""))
        if document.get("apiVersion") != COMPONENT_API_VERSION:
            findings.append(Finding("error", where, f"apiVersion must be {COMPONENT_API_VERSION}"))
        if not _NAME.match(name):
            findings.append(Finding("error", where, f"metadata.name {name!r} must be a lowercase DNS name"))
        if not kind or "." not in kind:
            findings.append(
                Finding("error", where, f"{name}: spec.type {kind!r} should look like state.redis")
            )
        if spec.get("version") != "v1":
            findings.append(Finding("error", where, f'{name}: spec.version must be "v1"'))
        meta = component_metadata(document)
        if kind.endswith(".redis") and not meta.get("redisHost"):
            findings.append(Finding("error", where, f"{name}: a Redis component needs metadata redisHost"))
        if kind.startswith("state."):
            flag = meta.get("actorStateStore")
            if str(flag).lower() == "true":
                actor_stores.append(f"{name} ({where})")
            elif flag is not None:
                findings.append(
                    Finding("error", where, f'{name}: actorStateStore must be "true", not {flag!r}')
                )
        if kind.startswith("pubsub."):
            pubsubs[name] = (where, meta)
    if not actor_stores:
        findings.append(
            Finding(
                "error",
                "state store",
                'no state store has metadata actorStateStore: "true"; daprd cannot host the banner actors '
                "without one (add it to the Redis state store component)",
            )
        )
    elif len(actor_stores) > 1:
        findings.append(
            Finding(
                "error", "state store", f"only one state store may be the actor store, found: {actor_stores}"
            )
        )
    if expect.pubsub not in pubsubs:
        defined = ", ".join(sorted(pubsubs)) or "none"
        findings.append(
            Finding(
                "error",
                "pub/sub",
                f"AirDisplay publishes to pub/sub component {expect.pubsub!r} but the components define: "
                f"{defined}; rename the component or set AIRDISPLAY_DAPR_PUBSUB",
            )
        )
    else:
        where, meta = pubsubs[expect.pubsub]
        consumer = str(meta.get("consumerID") or "")
        if not any(tag in consumer for tag in _PER_REPLICA):
            findings.append(
                Finding(
                    "warning",
                    where,
                    f"consumerID {consumer or '(app id)'!r} is shared by all replicas, so each event "
                    'reaches only one of them; use "{uuid}" (or "{podName}" on Kubernetes)',
                )
            )
        elif not meta.get("streamTTL") and not _small_cap(meta.get("maxLenApprox")):
            findings.append(
                Finding(
                    "warning",
                    where,
                    f"consumerID {consumer!r} makes a new consumer group at every start, which Redis "
                    "starts at stream id 0, so each start replays the stream's whole retained history; add "
                    f'metadata streamTTL (e.g. "60s") or a maxLenApprox of at most {_SMALL_MAX_LEN}',
                )
            )
        if meta.get("streamTTL") and meta.get("maxLenApprox"):
            findings.append(
                Finding(
                    "error",
                    where,
                    "streamTTL and maxLenApprox together: the Redis pub/sub then trims by length only and "
                    "ignores streamTTL; keep one of them (streamTTL)",
                )
            )
        if str(meta.get("concurrency", "10")) != "1":
            findings.append(
                Finding(
                    "warning", where, 'concurrency is not "1": events of one banner may arrive out of order'
                )
            )


def _small_cap(max_len: object) -> bool:
    text = str(max_len or "")
    return text.isdigit() and 0 < int(text) <= _SMALL_MAX_LEN


def _check_run_file(run_file: Path, findings: list[Finding]) -> None:
    where = str(run_file)
    try:
        template = yaml.safe_load(run_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        findings.append(Finding("error", where, f"cannot read the run file: {exc}"))
        return
    apps = (template or {}).get("apps") or []
    common = (template or {}).get("common") or {}
    if not apps:
        findings.append(Finding("error", where, "no apps: a multi-app run file lists them under apps:"))
    resources = common.get("resourcesPath")
    if resources and not (run_file.parent / resources).is_dir():
        findings.append(Finding("error", where, f"common.resourcesPath {resources!r} is not a directory"))
    app_ids = {str(app.get("appID")) for app in apps if isinstance(app, dict)}
    if len(app_ids) > 1:
        findings.append(
            Finding(
                "error", where, f"replicas must share one appID (actor state is keyed by it), found {app_ids}"
            )
        )
    seen_ports: set[object] = set()
    for app in apps:
        if not isinstance(app, dict):
            continue
        command = [str(c) for c in app.get("command") or []]
        port = command_option(command, "--port")
        if port is not None and str(app.get("appPort")) != port:
            findings.append(
                Finding(
                    "error",
                    where,
                    f"app {app.get('appID')}: appPort {app.get('appPort')} but the command serves on "
                    f"--port {port}; daprd would call a port nobody listens on",
                )
            )
        if "dapr" not in command or command_option(command, "--runtime") != "dapr":
            findings.append(
                Finding("error", where, f"app {app.get('appID')}: the command needs --runtime dapr")
            )
        http_port = app.get("daprHTTPPort")
        env_port = (app.get("env") or {}).get("DAPR_HTTP_PORT")
        if env_port is not None and str(env_port) != str(http_port):
            findings.append(
                Finding(
                    "error",
                    where,
                    f"daprHTTPPort {http_port} but env DAPR_HTTP_PORT {env_port}: they must match",
                )
            )
        for key in ("appPort", "daprHTTPPort", "daprGRPCPort"):
            value = app.get(key)
            if value is not None and (key, value) in seen_ports:
                findings.append(Finding("error", where, f"{key} {value} is used by two apps"))
            seen_ports.add((key, value))
        # An app's own settings win over common's, as in the Dapr CLI.
        _check_app_settings(where, {**common, **app}, findings)
    _check_log_files(run_file, [{**common, **app} for app in apps if isinstance(app, dict)], findings)


def _check_app_settings(where: str, settings: dict[str, Any], findings: list[Finding]) -> None:
    app = f"app {settings.get('appID')}"
    if settings.get("appHealthCheckPath") and str(settings.get("enableAppHealthCheck")).lower() != "true":
        findings.append(
            Finding(
                "error",
                where,
                f"{app}: appHealthCheckPath has no effect without enableAppHealthCheck: true; add it",
            )
        )
    for key in _LOG_DEFAULTS:
        if key in settings and settings[key] not in _LOG_DESTINATIONS:
            findings.append(
                Finding("error", where, f"{app}: {key} must be one of {', '.join(_LOG_DESTINATIONS)}")
            )
    named = {
        key: settings[key] for key in ("placementHostAddress", "schedulerHostAddress") if key in settings
    }
    for key, address in named.items():
        if not is_host_port(str(address or "")):
            findings.append(
                Finding(
                    "error",
                    where,
                    f"{app}: {key} {address!r} is not host:port with a port 1-65535 (an empty one turns "
                    "actors or reminders off); e.g. "
                    f"{DEFAULT_PLACEMENT if key == 'placementHostAddress' else DEFAULT_SCHEDULER}",
                )
            )
    if not named:
        findings.append(
            Finding(
                "warning",
                where,
                f"{app}: names neither placementHostAddress nor schedulerHostAddress, so the Dapr CLI "
                f"falls back to `dapr init`'s defaults (placement {DEFAULT_PLACEMENT}, scheduler "
                f"{DEFAULT_SCHEDULER}); name both under common: to make that explicit",
            )
        )
    elif "schedulerHostAddress" not in named:
        findings.append(
            Finding(
                "error",
                where,
                f"{app}: placementHostAddress without schedulerHostAddress: since Dapr 1.14 reminders "
                "exist only through the Scheduler, so the banners' expiry reminders depend on the CLI's "
                f"fallback ({DEFAULT_SCHEDULER}); name schedulerHostAddress too",
            )
        )
    elif "placementHostAddress" not in named:
        findings.append(
            Finding(
                "error",
                where,
                f"{app}: schedulerHostAddress without placementHostAddress: daprd hosts the banner actors "
                f"only through placement, left to the CLI's fallback ({DEFAULT_PLACEMENT}); name "
                "placementHostAddress too",
            )
        )


def _check_log_files(run_file: Path, apps: list[dict[str, Any]], findings: list[Finding]) -> None:
    """The Dapr CLI writes <appDirPath>/.dapr/logs/<appID>_app_<time>.log and ..._daprd_<time>.log."""
    groups: dict[tuple[str, Path], list[dict[str, Any]]] = {}
    for app in apps:
        directory = (run_file.parent / str(app.get("appDirPath") or ".")).resolve()
        groups.setdefault((str(app.get("appID")), directory), []).append(app)
    for (app_id, _), group in groups.items():
        if len(group) < 2:
            continue
        for key, default in _LOG_DEFAULTS.items():
            if any("file" in str(app.get(key, default)) for app in group):
                kind = key.removesuffix("LogDestination")
                findings.append(
                    Finding(
                        "error",
                        str(run_file),
                        f"{len(group)} apps share appID {app_id!r} and appDirPath "
                        f"{group[0].get('appDirPath')!r} and write {kind} logs to a file, so their "
                        f".dapr/logs/{app_id}_{kind}_<time>.log files collide; set {key}: console (or give "
                        "each replica its own appDirPath)",
                    )
                )


def command_option(command: list[str], flag: str) -> str | None:
    """The value after `flag` in an argument list, if any."""
    if flag in command and command.index(flag) + 1 < len(command):
        return command[command.index(flag) + 1]
    return None
