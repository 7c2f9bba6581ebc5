"""`airdisplay dapr check`: find the mistakes people make with Dapr configuration before daprd starts.

Each finding names the file and the fix. Errors make the check fail; warnings do not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

COMPONENT_API_VERSION = "dapr.io/v1alpha1"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: Templated consumer ids that differ per sidecar, so every replica receives every event.
_PER_REPLICA = ("{uuid}", "{podName}")


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

    pubsub: str = "pubsub"
    topic: str = "banner-changes"
    app_port: int = 8000
    #: The port daprd was told the app listens on (APP_PORT / --app-port), when known.
    dapr_app_port: int | None = None
    dapr_http_port: str | None = None


def check_dapr_setup(resources: Path, expect: Expectations, run_file: Path | None = None) -> list[Finding]:
    """All findings for a components directory, an optional `dapr run -f` file and the settings."""
    findings: list[Finding] = []
    components = _load_components(resources, findings)
    _check_components(components, expect, findings)
    if run_file is not None:
        _check_run_file(run_file, findings)
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
    return findings


def _load_components(resources: Path, findings: list[Finding]) -> list[tuple[str, dict[str, Any]]]:
    if not resources.is_dir():
        findings.append(Finding("error", str(resources), "no such directory: pass --resources-path DIR"))
        return []
    files = sorted([*resources.glob("*.yaml"), *resources.glob("*.yml")])
    if not files:
        findings.append(Finding("error", str(resources), "holds no .yaml component files"))
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
            elif document.get("kind") == "Component":
                loaded.append((str(path), document))
    return loaded


def _metadata(document: dict[str, Any]) -> dict[str, Any]:
    items = (document.get("spec") or {}).get("metadata") or []
    found: dict[str, Any] = {}
    for item in items:
        if isinstance(item, dict) and "name" in item:
            found[str(item["name"])] = item.get("value", item.get("secretKeyRef"))
    return found


def _check_components(
    components: list[tuple[str, dict[str, Any]]], expect: Expectations, findings: list[Finding]
) -> None:
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
        meta = _metadata(document)
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
        if str(meta.get("concurrency", "10")) != "1":
            findings.append(
                Finding(
                    "warning", where, 'concurrency is not "1": events of one banner may arrive out of order'
                )
            )


def _check_run_file(run_file: Path, findings: list[Finding]) -> None:
    where = str(run_file)
    try:
        template = yaml.safe_load(run_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        findings.append(Finding("error", where, f"cannot read the run file: {exc}"))
        return
    apps = (template or {}).get("apps") or []
    if not apps:
        findings.append(Finding("error", where, "no apps: a multi-app run file lists them under apps:"))
    resources = ((template or {}).get("common") or {}).get("resourcesPath")
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
        port = _option(command, "--port")
        if port is not None and str(app.get("appPort")) != port:
            findings.append(
                Finding(
                    "error",
                    where,
                    f"app {app.get('appID')}: appPort {app.get('appPort')} but the command serves on "
                    f"--port {port}; daprd would call a port nobody listens on",
                )
            )
        if "dapr" not in command or _option(command, "--runtime") != "dapr":
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


def _option(command: list[str], flag: str) -> str | None:
    if flag in command and command.index(flag) + 1 < len(command):
        return command[command.index(flag) + 1]
    return None
