"""The package as a user installs it: built like a release, installed without the dev group, commands run.

`uv build` makes the sdist and then the wheel from it, as pip does from a published sdist; the wheel goes
into a new venv with only the locked runtime dependencies. There it must import every module, answer every
command's --help, pass `airdisplay dapr check` on the components it carries, and serve a page that renders
the fleet in real Chromium (its Alpine.js and Swagger UI come inside the wheel, from npm: hatch_build.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import expect

from tests.conftest import WAIT_LIMIT, free_port, skip_for_missing, wait_ready
from tests.web.conftest import UI_TIMEOUT_MS, browser, open_fleet  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parent.parent
#: Build, venv and install take ~15 s with a warm uv cache on a loaded 2-core machine; a cold cache first
#: downloads the runtime dependencies (~40 MB).
PACKAGE_TIMEOUT = 300
VENDOR = "airdisplay/web/static/vendor/"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(PACKAGE_TIMEOUT)]

#: Run by the installed venv's Python, away from the checkout: imports every module of the package and
#: asks every command of the click tree for its --help.
PROBE = """
import importlib, json, pkgutil
import click
from click.testing import CliRunner
import airdisplay
from airdisplay.cli import main

modules = [m.name for m in pkgutil.walk_packages(airdisplay.__path__, "airdisplay.")]
for name in modules:
    if not name.endswith(".__main__"):
        importlib.import_module(name)

def walk(command, path):
    yield path
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from walk(sub, [*path, name])

helps = {}
for path in walk(main, []):
    result = CliRunner().invoke(main, [*path, "--help"])
    helps[" ".join(["airdisplay", *path])] = [result.exit_code, result.output]
print(json.dumps({"package": airdisplay.__file__, "modules": modules, "helps": helps}))
"""


@dataclass
class Installed:
    wheel: Path
    venv: Path
    workdir: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def airdisplay(self) -> Path:
        return self.venv / "bin" / "airdisplay"

    def run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        """Run in the installed venv, from a directory outside the checkout."""
        return subprocess.run(
            [str(arg) for arg in args],
            cwd=self.workdir,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=WAIT_LIMIT * 4,
        )


def _clean_env() -> dict[str, str]:
    """This process's environment without what points Python or uv at the dev venv."""
    dropped = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT"}
    return {key: value for key, value in os.environ.items() if key not in dropped}


def _uv() -> str:
    """The uv that runs this suite (`uv run` sets UV), else the one on PATH or where the Makefile puts it."""
    for candidate in (os.environ.get("UV"), shutil.which("uv"), str(Path.home() / ".local/bin/uv")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    skip_for_missing("uv is not installed: `make install` bootstraps it into ~/.local/bin")


def _uv_run(*args: str | Path, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        [_uv(), *(str(arg) for arg in args)],
        cwd=cwd,
        env={**_clean_env(), "UV_PYTHON_DOWNLOADS": "never"},
        capture_output=True,
        text=True,
        timeout=PACKAGE_TIMEOUT / 2,
    )
    assert done.returncode == 0, f"uv {' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The sdist and wheel built from this checkout; the wheel in a new venv with the runtime lock only."""
    base = tmp_path_factory.mktemp("package")
    dist, venv, workdir = base / "dist", base / "venv", base / "work"
    workdir.mkdir()
    _uv_run("build", "--out-dir", dist, ".")
    (wheel,) = dist.glob("airdisplay-*.whl")
    runtime_lock = base / "runtime-requirements.txt"
    _uv_run("export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "-o", runtime_lock)
    _uv_run("venv", "--python", sys.executable, venv)
    _uv_run("pip", "install", "--python", venv / "bin" / "python", "-r", runtime_lock, wheel)
    return Installed(wheel, venv, workdir)


def test_the_wheel_carries_the_page_assets_from_npm_and_the_dapr_components(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        for npm_file, packaged in [
            ("@alpinejs/csp/dist/cdn.min.js", "alpine-csp.min.js"),
            ("swagger-ui-dist/swagger-ui-bundle.js", "swagger-ui-bundle.js"),
            ("swagger-ui-dist/swagger-ui.css", "swagger-ui.css"),
        ]:
            assert VENDOR + packaged in names
            assert wheel.read(VENDOR + packaged) == (ROOT / "node_modules" / npm_file).read_bytes()
    assert "airdisplay/web/static/index.html" in names
    for component in ("pubsub.yaml", "statestore.yaml"):
        assert f"airdisplay/runtimes/dapr/components/{component}" in names


def test_without_dev_dependencies_every_module_imports_and_every_command_helps(installed: Installed) -> None:
    done = installed.run(installed.python, "-c", PROBE)
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout)
    assert probe["package"].startswith(str(installed.venv)), "imported from the checkout, not the wheel"
    assert "airdisplay.simulator._fleet" in probe["modules"]
    helps = probe["helps"]
    assert {
        "airdisplay serve",
        "airdisplay simulate",
        "airdisplay dapr check",
        "airdisplay keys create",
    } <= set(helps)
    failed = {
        command: output for command, (code, output) in helps.items() if code != 0 or "Usage:" not in output
    }
    assert not failed, failed
    script = installed.run(installed.airdisplay, "--help")  # the console script itself
    assert script.returncode == 0 and "serve" in script.stdout, script.stderr


def test_dapr_check_passes_on_the_components_the_package_carries(installed: Installed) -> None:
    done = installed.run(installed.airdisplay, "dapr", "check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert str(installed.venv) in done.stdout  # the package's components, not a checkout's
    assert "look right" in done.stdout


def _serve(installed: Installed, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`airdisplay serve` of the installed package, from outside the checkout, its output in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [installed.airdisplay, "serve", "--port", str(port), "--data-dir", installed.workdir / "data"],
            cwd=installed.workdir,
            env=_clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


# open_fleet first: without Chromium the test skips before the package is built.
async def test_the_installed_server_renders_the_fleet_in_chromium(open_fleet, installed: Installed) -> None:  # noqa: F811
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = installed.workdir / "serve.log"
    proc = _serve(installed, port, log)
    try:
        await asyncio.to_thread(wait_ready, proc, url, limit=WAIT_LIMIT * 2, log=log)
        async with httpx.AsyncClient(base_url=url, timeout=WAIT_LIMIT) as client:
            for banner_id, name in [("n123ab", "Cessna N123AB"), ("d-eabc", "Piper D-EABC")]:
                created = await client.post("/api/v1/banners", json={"id": banner_id, "name": name})
                assert created.status_code == 201, created.text
        fleet = await open_fleet(url)
        await expect(fleet.cards).to_have_count(2)
        await expect(fleet.card("n123ab")).to_contain_text("Cessna N123AB")
        await expect(fleet.card("d-eabc")).to_contain_text("Piper D-EABC")
        assert f"{url}/static/vendor/alpine-csp.min.js" in fleet.requests

        docs = await fleet.page.context.new_page()
        await docs.goto(f"{url}/docs")
        await expect(docs.get_by_text("/api/v1/banners/{banner_id}/message").first).to_be_visible(
            timeout=UI_TIMEOUT_MS
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, WAIT_LIMIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)
    # uvicorn shuts down gracefully, then dies of the SIGTERM it caught, as a process should.
    assert proc.returncode in (0, -signal.SIGTERM), log.read_text()
    assert "Application shutdown complete" in log.read_text()
