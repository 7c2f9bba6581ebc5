"""`airdisplay dapr check`: validate a Dapr set-up before daprd starts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click


@click.group()
def dapr() -> None:
    """Tools for running AirDisplay on Dapr."""


@dapr.command("check")
@click.option(
    "--resources-path",
    type=click.Path(path_type=Path),
    default=Path("deploy/dapr/components"),
    show_default=True,
    help="Directory of Dapr component files.",
)
@click.option(
    "--run-file",
    type=click.Path(path_type=Path),
    default=None,
    help="A `dapr run -f` file to check too (default: deploy/dapr/dapr.yaml when it exists).",
)
@click.option(
    "--k8s",
    type=click.Path(path_type=Path),
    default=None,
    help="A directory of Kubernetes manifests to check too (default: deploy/dapr/k8s when it exists).",
)
@click.option(
    "--placement-host-address",
    envvar="AIRDISPLAY_DAPR_PLACEMENT",
    default=None,
    help="daprd's placement service, host:port [env AIRDISPLAY_DAPR_PLACEMENT].",
)
@click.option(
    "--scheduler-host-address",
    envvar="AIRDISPLAY_DAPR_SCHEDULER",
    default=None,
    help="daprd's scheduler service (reminders), host:port [env AIRDISPLAY_DAPR_SCHEDULER].",
)
@click.option(
    "--port",
    envvar="AIRDISPLAY_PORT",
    type=int,
    default=8000,
    show_default=True,
    help="The port AirDisplay serves on [env AIRDISPLAY_PORT].",
)
@click.option(
    "--app-port",
    envvar="APP_PORT",
    type=int,
    default=None,
    help="The port daprd calls the app on (daprd --app-port) [env APP_PORT].",
)
@click.option(
    "--pubsub",
    envvar="AIRDISPLAY_DAPR_PUBSUB",
    default="pubsub",
    show_default=True,
    help="Pub/sub component name [env AIRDISPLAY_DAPR_PUBSUB].",
)
def dapr_check(
    resources_path: Path,
    run_file: Path | None,
    k8s: Path | None,
    placement_host_address: str | None,
    scheduler_host_address: str | None,
    port: int,
    app_port: int | None,
    pubsub: str,
) -> None:
    """Validate the Dapr components, run file, manifests and settings before daprd starts; exit 1 on error."""
    from ..runtimes.dapr._check import Expectations, check_dapr_setup

    if resources_path == Path("deploy/dapr/components"):
        if run_file is None and Path("deploy/dapr/dapr.yaml").exists():
            run_file = Path("deploy/dapr/dapr.yaml")
        if k8s is None and Path("deploy/dapr/k8s").is_dir():
            k8s = Path("deploy/dapr/k8s")
    expect = Expectations(
        pubsub=pubsub,
        app_port=port,
        dapr_app_port=app_port,
        dapr_http_port=os.environ.get("DAPR_HTTP_PORT"),
        placement_host_address=placement_host_address,
        scheduler_host_address=scheduler_host_address,
    )
    findings = check_dapr_setup(resources_path, expect, run_file, k8s)
    for finding in findings:
        click.echo(str(finding), err=finding.level == "error")
    errors = sum(1 for f in findings if f.level == "error")
    checked = ", ".join(str(p) for p in (resources_path, run_file, k8s) if p is not None)
    if errors:
        click.echo(f"dapr check: {errors} error(s) in {checked}", err=True)
        sys.exit(1)
    click.echo(f"dapr check: {checked} look right ({len(findings)} warning(s))")
