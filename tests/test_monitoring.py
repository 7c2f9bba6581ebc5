"""What an operator scrapes and looks at: /metrics passes Prometheus's own naming checks (promtool), the
Grafana dashboard in deploy/grafana queries only metrics the server exports, and a real Prometheus with
the scrape config shipped there reads a real server's metrics back.

promtool and prometheus come from Debian's `prometheus` package (.ci/run installs it); without it these
tests skip and say so.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path
from subprocess import DEVNULL, PIPE, STDOUT

import httpx
import yaml

from tests.conftest import StreamClient, connect_device, eventually, free_port, skip_for_missing

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "airdisplay-dashboard.json"
SCRAPE_CONFIG = GRAFANA / "prometheus.yml"
KEY = "m" * 40
#: What Prometheus appends to a family's name in its series: histograms' and counters' suffixes.
SERIES_SUFFIXES = ("_bucket", "_count", "_sum", "_total")
#: Prometheus's functions and keywords that look like metric names in a query.
NOT_METRICS = {"le", "by", "sum", "rate", "histogram_quantile", "label_values", "instance"}


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        skip_for_missing(f"no {name}: install Debian's prometheus package (apt-get install prometheus)")
    return found


async def exercised(start_server):
    """A server on which every kind of metric has a sample: submits, turns, commits, an expiry, a stream,
    a device link, a 404."""
    server = await start_server(api_key=KEY, client_sends_key=True, message_seconds=0.2)
    token = (await server.create("b1")).json()["device_token"]
    device = await connect_device(server, "b1", token)
    ui = await StreamClient.connect(server, "?banners=b1")
    assert (await server.client.post("/api/v1/banners/b1/message", json={"text": "hi"})).status_code == 201
    await ui.until(lambda f: f["type"] == "banner" and f["kind"] == "message_expired")
    assert (await server.client.get("/api/v1/nowhere")).status_code == 404
    await device.close()
    await ui.close()
    return server


def families(exposition: str) -> set[str]:
    """The metric families a /metrics page declares (its `# TYPE` lines)."""
    return set(re.findall(r"^# TYPE (\S+) ", exposition, re.M))


def queried_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression reads, without label names, functions or suffixes."""
    without_labels = re.sub(r"\{[^}]*\}", "", expr)
    names = set(re.findall(r"\b[a-z_][a-z0-9_]*\b", without_labels)) - NOT_METRICS
    found = set()
    for name in names:
        if not (name.startswith("airdisplay_") or name.startswith("process_")):
            continue
        for suffix in SERIES_SUFFIXES:
            if name.endswith(suffix) and not name.endswith("_seconds_total"):
                name = name.removesuffix(suffix)
                break
        found.add(name)
    return found


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["query"]["query"])
    return queries


async def test_metrics_pass_promtool_naming_checks(start_server):
    promtool = binary("promtool")
    server = await exercised(start_server)
    exposition = (await server.client.get("/metrics")).text
    assert "airdisplay_actor_turn_duration_seconds_bucket" in exposition
    checked = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT
    )
    said, _ = await asyncio.wait_for(checked.communicate(exposition.encode()), 30)
    assert checked.returncode == 0 and not said.strip(), said.decode()


async def test_every_dashboard_query_names_a_metric_the_server_exports(start_server):
    server = await exercised(start_server)
    exported = families((await server.client.get("/metrics")).text)
    queries = dashboard_queries()
    assert len(queries) >= 20
    read = set().union(*(queried_metrics(q) for q in queries))
    assert read, "no metric names found in the dashboard"
    missing = {name for name in read if name not in exported and f"{name}_total" not in exported}
    assert not missing, f"the dashboard queries metrics the server does not export: {sorted(missing)}"
    # And the parts of the dashboard people see first: each panel says what it shows.
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        if panel["type"] != "row":
            assert panel["title"] and panel["description"], panel


def sample(exposition: str, series: str) -> float | None:
    """The value of one series (`name{labels}`, labels in the page's order) on a /metrics page."""
    for line in exposition.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


async def test_route_latency_counts_every_request_by_route_template_and_status(start_server):
    """The submit fast path (timed by the app itself, tracing off), its refusals, routed requests and
    unmatched ones each land in `airdisplay_http_request_duration_seconds` under their template."""
    server = await start_server(api_key=KEY, client_sends_key=True)
    for name in ("r1", "r2", "r3"):
        await server.create(name)
    submit = "/api/v1/banners/{banner_id}/message"
    for name in ("r1", "r2", "r3"):
        assert (
            await server.client.post(f"/api/v1/banners/{name}/message", json={"text": "a"})
        ).status_code == 201
    assert (await server.client.post("/api/v1/banners/r1/message", json={"text": "b"})).status_code == 409
    assert (await server.client.post("/api/v1/banners/r1/message", json={})).status_code == 422
    assert (await server.client.get("/api/v1/banners/r2")).status_code == 200
    assert (await server.client.get("/api/v1/nowhere")).status_code == 404
    page = (await server.client.get("/metrics")).text
    series = "airdisplay_http_request_duration_seconds_count"
    assert sample(page, f'{series}{{method="POST",route="{submit}",status="201"}}') == 3
    assert sample(page, f'{series}{{method="POST",route="{submit}",status="409"}}') == 1
    assert sample(page, f'{series}{{method="POST",route="{submit}",status="422"}}') == 1
    assert sample(page, f'{series}{{method="GET",route="/api/v1/banners/{{banner_id}}",status="200"}}') == 1
    assert sample(page, f'{series}{{method="GET",route="unmatched",status="404"}}') == 1
    took = sample(page, f'{series.replace("_count", "_sum")}{{method="POST",route="{submit}",status="201"}}')
    assert took is not None and 0 < took < 30


def test_the_query_reader_finds_names_and_drops_suffixes():
    expr = 'histogram_quantile(0.99, sum by (le) (rate(airdisplay_x_seconds_bucket{instance=~"$i"}[5m])))'
    assert queried_metrics(expr) == {"airdisplay_x_seconds"}
    assert queried_metrics("sum(rate(airdisplay_messages_total[1m])) / process_cpu_seconds_total") == {
        "airdisplay_messages",
        "process_cpu_seconds_total",
    }


async def test_a_real_prometheus_scrapes_a_real_server_with_the_shipped_config(start_server, tmp_path):
    prometheus = binary("prometheus")
    server = await exercised(start_server)
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    config["global"]["scrape_interval"] = "1s"  # the shipped 15 s, shortened for the test
    job = config["scrape_configs"][0]
    job["static_configs"][0]["targets"] = [server.url.removeprefix("http://")]
    (tmp_path / job["authorization"]["credentials_file"]).write_text(KEY)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        prometheus,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=DEVNULL,
        stderr=PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

            async def accepted() -> list:
                try:
                    answer = await client.get(
                        "/api/v1/query", params={"query": 'airdisplay_messages_total{outcome="accepted"}'}
                    )
                except httpx.TransportError:
                    return []  # not listening yet
                return answer.json()["data"]["result"] if answer.status_code == 200 else []

            result = await eventually(accepted, what="the accepted submits, through Prometheus", limit=30)
            assert float(result[0]["value"][1]) == 1.0
            targets = (await client.get("/api/v1/targets")).json()["data"]["activeTargets"]
            assert [t["health"] for t in targets] == ["up"]
    finally:
        proc.terminate()
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    # Without the key the same scrape is refused: /metrics is the operator's.
    async with httpx.AsyncClient() as anonymous:
        assert (await anonymous.get(server.url + "/metrics")).status_code == 401
