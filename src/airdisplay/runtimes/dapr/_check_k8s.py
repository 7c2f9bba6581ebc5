"""`airdisplay dapr check --k8s`: the Kubernetes manifests, read the way the sidecar injector and kubelet do.

The components pass the same checks as the local ones; the Deployment's dapr.io annotations must match the
container, every Secret key it reads must exist, and the app must reach Redis with the components' password.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._check import (
    Expectations,
    Finding,
    check_components,
    command_option,
    component_metadata,
    load_documents,
)

#: The only key the sidecar injector reads from the Secret that dapr.io/app-token-secret names.
APP_TOKEN_KEY = "token"
#: `airdisplay serve --port`'s default.
_SERVE_PORT = "8000"
_ENV_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_k8s_manifests(directory: Path, expect: Expectations) -> list[Finding]:
    """All findings for a directory of Kubernetes manifests (Secrets, the Deployment, Dapr components)."""
    findings: list[Finding] = []
    documents = load_documents(directory, findings, "--k8s", ("Component", "Secret", "Deployment"))
    if not directory.is_dir():
        return findings
    components = [(where, d) for where, d in documents if d["kind"] == "Component"]
    if components:
        check_components(components, expect, findings)
    else:
        findings.append(
            Finding("error", str(directory), "holds no Dapr Component: add the state store and pub/sub")
        )
    secrets = {
        str((d.get("metadata") or {}).get("name")): {*(d.get("data") or {}), *(d.get("stringData") or {})}
        for _, d in documents
        if d["kind"] == "Secret"
    }
    apps = [
        (where, d, container)
        for where, d in documents
        if d["kind"] == "Deployment"
        for container in _containers(d)
        if _serves_airdisplay(container)
    ]
    if not apps:
        findings.append(Finding("error", str(directory), "no Deployment runs `airdisplay serve`"))
    for where, deployment, container in apps:
        _check_deployment(where, deployment, container, secrets, components, findings)
    return findings


def _containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [c for c in pod.get("containers") or [] if isinstance(c, dict)]


def _argv(container: dict[str, Any]) -> list[str]:
    return [str(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]


def _serves_airdisplay(container: dict[str, Any]) -> bool:
    argv = _argv(container)
    return "serve" in argv and any(Path(a).name == "airdisplay" for a in argv[:3])


def _check_deployment(
    where: str,
    deployment: dict[str, Any],
    container: dict[str, Any],
    secrets: dict[str, set[str]],
    components: list[tuple[str, dict[str, Any]]],
    findings: list[Finding],
) -> None:
    name = f"Deployment {(deployment.get('metadata') or {}).get('name')}"
    template = (deployment.get("spec") or {}).get("template") or {}
    annotations = {str(k): v for k, v in ((template.get("metadata") or {}).get("annotations") or {}).items()}
    argv = _argv(container)
    env = [e for e in container.get("env") or [] if isinstance(e, dict)]
    values = {str(e.get("name")): e for e in env}

    def error(message: str) -> None:
        findings.append(Finding("error", where, f"{name}: {message}"))

    if annotations.get("dapr.io/enabled") != "true":
        error('annotation dapr.io/enabled must be "true" (a quoted string), or no daprd sidecar is injected')
    if not annotations.get("dapr.io/app-id"):
        error(
            "annotation dapr.io/app-id is missing: replicas must share one app id (actor state is keyed "
            "by it)"
        )
    port = command_option(argv, "--port") or str(
        (values.get("AIRDISPLAY_PORT") or {}).get("value") or _SERVE_PORT
    )
    app_port = annotations.get("dapr.io/app-port")
    if app_port is None:
        error(f"annotation dapr.io/app-port is missing, so daprd never calls the app: set it to {port!r}")
    elif str(app_port) != port:
        error(f"dapr.io/app-port {app_port} but the container serves on --port {port}; make them equal")
    for variable, entry in values.items():
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef") or {}
        keys = secrets.get(str(ref.get("name")))
        if keys is not None and ref.get("key") not in keys and not ref.get("optional"):
            error(
                f"env {variable} reads key {ref.get('key')!r} of Secret {ref.get('name')}, which holds only "
                f"{sorted(keys)}: the pod fails with CreateContainerConfigError"
            )
    token_secret = annotations.get("dapr.io/app-token-secret")
    if token_secret is not None:
        keys = secrets.get(str(token_secret))
        if keys is not None and APP_TOKEN_KEY not in keys:
            error(
                f"dapr.io/app-token-secret names Secret {token_secret}, which has no key "
                f"{APP_TOKEN_KEY!r} (it holds {sorted(keys)}); the sidecar injector reads only "
                f"{APP_TOKEN_KEY!r}, so daprd fails with CreateContainerConfigError: put the app token under "
                f"key {APP_TOKEN_KEY} in a Secret of its own"
            )
        ref = ((values.get("APP_API_TOKEN") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        if (ref.get("name"), ref.get("key")) != (token_secret, APP_TOKEN_KEY):
            error(
                f"env APP_API_TOKEN must read Secret {token_secret} key {APP_TOKEN_KEY}, the token daprd "
                "sends (dapr.io/app-token-secret); with another value the app refuses every call from daprd"
            )
    elif command_option(argv, "--host") not in _LOOPBACK:
        error("the app listens beyond loopback, so it needs APP_API_TOKEN: set dapr.io/app-token-secret")
    for position, entry in enumerate(env):
        for variable in _ENV_REFERENCE.findall(str(entry.get("value") or "")):
            if variable not in {str(e.get("name")) for e in env[:position]}:
                error(
                    f"env {entry.get('name')} uses $({variable}), but Kubernetes expands $(VAR) only from "
                    f"variables listed earlier, so it keeps the literal text: list {variable} before it"
                )
    _check_redis_url(error, argv, values, components)


def _check_redis_url(
    error: Callable[[str], None],
    argv: list[str],
    values: dict[str, dict[str, Any]],
    components: list[tuple[str, dict[str, Any]]],
) -> None:
    url = command_option(argv, "--redis-url") or (values.get("AIRDISPLAY_REDIS_URL") or {}).get("value")
    if not url:
        error("no AIRDISPLAY_REDIS_URL, so the app's Redis directory dials 127.0.0.1:6379 inside the pod")
        return
    passwords = [
        f"secret {p.get('name')} key {p.get('key')}" if isinstance(p, dict) else where
        for where, d in components
        if (p := component_metadata(d).get("redisPassword"))
    ]
    if passwords and not urlsplit(str(url)).password:
        error(
            f"the components log in to Redis with redisPassword from {passwords[0]} but AIRDISPLAY_REDIS_URL "
            "carries no password, so the app's Redis directory fails with NOAUTH: add env "
            "AIRDISPLAY_REDIS_PASSWORD from the same secret, listed before the URL, and use "
            "redis://:$(AIRDISPLAY_REDIS_PASSWORD)@host:6379/0"
        )
