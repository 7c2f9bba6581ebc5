"""`airdisplay dapr check`: validate a Dapr set-up before daprd starts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..config import Settings
from ._common import fail, settings_option


@click.group()
def dapr() -> None:
    """Tools for running AirDisplay on Dapr."""


@dapr.command("check")
@click.option(
    "--resources-path",
    type=click.Path(path_type=Path),
    default=Path("deploy/dapr/components"),
    show_default=True,
    help="Directory of Dapr component files (outside a checkout of the repository: the ones this package "
    "carries, which `airdisplay dapr local` uses).",
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
@settings_option("port", help="The port AirDisplay serves on")
@click.option(
    "--app-port",
    envvar="APP_PORT",
    type=int,
    default=None,
    help="The port daprd calls the app on (daprd --app-port) [env APP_PORT].",
)
@settings_option("dapr_pubsub", "--pubsub", help="Pub/sub component name")
def dapr_check(
    resources_path: Path,
    run_file: Path | None,
    k8s: Path | None,
    placement_host_address: str | None,
    scheduler_host_address: str | None,
    port: int,
    app_port: int | None,
    dapr_pubsub: str,
) -> None:
    """Validate the Dapr components, run file, manifests and settings before daprd starts; exit 1 on error."""
    from ..runtimes.dapr._check import Expectations, check_dapr_setup

    if resources_path == Path("deploy/dapr/components") and not resources_path.exists():
        from ..runtimes.dapr._local import COMPONENTS

        resources_path = COMPONENTS  # installed with pip, not run from the repository
    elif resources_path == Path("deploy/dapr/components"):
        if run_file is None and Path("deploy/dapr/dapr.yaml").exists():
            run_file = Path("deploy/dapr/dapr.yaml")
        if k8s is None and Path("deploy/dapr/k8s").is_dir():
            k8s = Path("deploy/dapr/k8s")
    expect = Expectations(
        pubsub=dapr_pubsub,
        app_port=port,
        dapr_app_port=app_port,
        dapr_http_port=os.environ.get(Settings.option("dapr_http_port").variables[0]),
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


@dapr.command("local", context_settings={"ignore_unknown_options": True})
@click.option(
    "--replicas", type=click.IntRange(1, 16), default=2, show_default=True, help="How many replicas."
)
@click.option(
    "--port", type=int, default=8001, show_default=True, help="Replica i serves on PORT+i (8001, 8002, ...)."
)
@settings_option("redis_url", help="The Redis for actor state, pub/sub and the fleet directory")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("./data/dapr-local"),
    show_default=True,
    help="Logs, components, the scheduler's data (pending reminders) and each replica's data directory.",
)
@click.argument("serve_args", nargs=-1, type=click.UNPROCESSED)
def dapr_local(replicas: int, port: int, redis_url: str, workdir: Path, serve_args: tuple[str, ...]) -> None:
    """Run Dapr's placement and scheduler and N replicas (daprd + serve --runtime dapr) on 127.0.0.1.

    Options after `--` go to every `airdisplay serve`. The binaries come from `make dapr`. Ctrl-C stops all.
    """
    import signal
    import time

    from ..runtimes.dapr._local import LocalDapr

    cluster = LocalDapr(workdir.resolve(), redis_url, replicas, base_port=port, serve_args=serve_args)
    stopping: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _frame: stopping.append(number))
    try:
        click.echo(
            f"dapr local: starting placement, scheduler and {replicas} replica(s); logs in {cluster.logs}"
        )
        try:
            cluster.start()
        except (FileNotFoundError, TimeoutError) as exc:
            fail(str(exc))
        for replica in cluster.members:
            click.echo(f"dapr local: replica {replica.index} at {replica.url} (daprd {replica.dapr_url})")
        click.echo("dapr local: running; Ctrl-C stops everything")
        while not stopping:
            if dead := [r.index for r in cluster.members if not r.running()]:
                fail(f"replica {dead[0]} stopped; see {cluster.logs}")
            time.sleep(0.5)
    finally:
        click.echo("dapr local: stopping")
        cluster.stop()
