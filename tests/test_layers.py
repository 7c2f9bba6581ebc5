"""The seams between the layers, read from the source so that they stay true.

The HTTP edge (api/) knows the runtime interface (runtimes/), never the actor runtime (actors/) nor a
runtime's adapter; the embedded runtime uses only the public names of actors/; onboarding writes through
the store's API, not SQL of its own; and importing the runtime interface imports neither SQLite nor the
actor runtime nor the Dapr SDK (a runtime is imported when it is chosen, runtimes/__init__.py).

The rules read the package that is imported (`airdisplay.__file__`), so they can be checked against
another checkout: `PYTHONPATH=<checkout>/src pytest tests/test_layers.py`. The tests have a seam too: no
module of tests/ imports a test module; what several use lives in a conftest.
"""

from __future__ import annotations

import ast
import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

import airdisplay

PACKAGE = Path(airdisplay.__file__).parent
TESTS = Path(__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved, `from m import x` as both m and m.x."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def modules_under(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_edge_imports_nothing_of_the_actor_runtime():
    offending = {
        f"{path.relative_to(PACKAGE)}: {module}"
        for path in modules_under("api")
        for module in imported_modules(path)
        if within(module, "airdisplay.actors")
    }
    assert not offending, "api/ must know only the runtime interface (runtimes/)"


def test_the_edge_imports_no_runtime_adapter():
    adapters = ("airdisplay.runtimes.embedded", "airdisplay.runtimes.dapr")
    offending = {
        f"{path.relative_to(PACKAGE)}: {module}"
        for path in modules_under("api")
        for module in imported_modules(path)
        if any(within(module, adapter) for adapter in adapters)
    }
    assert not offending, "api/ gets its runtime from runtimes.open_runtime, by name"


def test_the_embedded_runtime_uses_only_public_names_of_the_actor_runtime():
    private = {
        module
        for module in imported_modules(PACKAGE / "runtimes" / "embedded.py")
        if within(module, "airdisplay.actors") and any(part.startswith("_") for part in module.split("."))
    }
    assert not private


def test_onboarding_writes_through_the_store_not_sql_of_its_own():
    path = PACKAGE / "onboarding.py"
    assert "sqlite3" not in imported_modules(path)
    strings = [
        node.value
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]
    assert not [text for text in strings if "actor_state" in text]


def test_modules_of_the_tests_import_no_test_module():
    """Helpers that several test modules use live in tests/conftest.py (or the conftest of the one package
    that uses them): importing a test module ties it to another's tests and, for a fixture, needs a noqa."""
    offending = set()
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            offending.update(
                f"{path.relative_to(TESTS.parent)}: {name}"
                for name in names
                if (name.startswith(("tests.", ".")) and any(p.startswith("test_") for p in name.split(".")))
            )
    assert not offending, "move what is shared to a conftest"


#: Run in a fresh interpreter: which of the heavy modules `import airdisplay.runtimes` brings in.
PROBE = """
import json, sys
import airdisplay.runtimes
heavy = ("sqlite3", "airdisplay.actors", "dapr", "airdisplay.runtimes.embedded", "airdisplay.runtimes.dapr")
print(json.dumps(sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))))
"""


def test_importing_the_runtime_interface_imports_neither_sqlite_nor_the_actors_nor_dapr():
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, cwd=PACKAGE.parent
    )
    assert json.loads(done.stdout) == []


@pytest.mark.timeout(30)
async def test_the_embedded_runtime_reports_its_failures_as_the_interface_errors(tmp_path, monkeypatch):
    """What the edge maps: a runtime that is not running, a store that refuses a write or a read, each
    as the interface's error. The store's failures are stood in for (a write refused as on a full disk,
    a failed read); tests/api/test_storage_faults.py makes real ones against a real server."""
    from airdisplay.actors import StoreError, StoreReadOnly
    from airdisplay.domain import BannerRules
    from airdisplay.runtimes import RuntimeNotRunning, StorageUnavailable
    from airdisplay.runtimes.embedded import EmbeddedRuntime

    runtime = EmbeddedRuntime(tmp_path, BannerRules(), idle_timeout=0.01)
    with pytest.raises(RuntimeNotRunning):
        await runtime.get_banner("b1")
    with pytest.raises(StorageUnavailable):
        await runtime.list_banners(after=None, limit=10)
    await runtime.start()
    try:
        await runtime.create_banner("b1", "One")
        store = runtime.host.store

        def refuse(write: object, **_: object) -> asyncio.Future[bool]:
            failed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            failed.set_exception(StoreReadOnly("disk full"))
            return failed

        with monkeypatch.context() as patch:
            patch.setattr(store, "write", refuse)
            with pytest.raises(StorageUnavailable, match="disk full"):
                await runtime.submit_message("b1", "refused")
        assert (await runtime.get_banner("b1")).message is None

        async def unreadable(actor_type: str, actor_id: str, **_: object) -> dict[str, bytes]:
            raise StoreError("reading failed")

        with monkeypatch.context() as patch:
            patch.setattr(store, "read_actor", unreadable)
            with pytest.raises(StorageUnavailable, match="reading failed"):
                await runtime.get_banner("never-activated")
    finally:
        await runtime.stop()


async def test_the_edge_answers_a_runtime_that_is_not_running_with_503_service_unavailable(tmp_path):
    """The edge's mapping of RuntimeNotRunning, as it was for the actor host's RuntimeClosed. The app is
    driven in-process without its lifespan: that is how a runtime stays unstarted behind it."""
    import httpx

    from airdisplay.api import create_app
    from airdisplay.config import Settings
    from airdisplay.domain import BannerRules
    from airdisplay.runtimes.embedded import EmbeddedRuntime

    app = create_app(Settings(data_dir=tmp_path), EmbeddedRuntime(tmp_path, BannerRules()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        answer = await client.get("/api/v1/banners/b1")
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["title"] == "Service unavailable"
    assert answer.json()["detail"] == "the service is starting or stopping"
    assert "retry-after" not in answer.headers
