"""Schemathesis against the service's own OpenAPI document, on a real server: no 5xx, every answer
documented and matching its schema (status, content type, headers, body), auth enforced where declared."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
OPERATOR_KEY = "fuzzing-operator-key"
#: Examples per operation and phase: ~400 requests per run, a few seconds; a fixed seed keeps CI stable.
MAX_EXAMPLES = 25
SEED = 20261128


async def run_schemathesis(url: str, workdir: Path, *extra: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        SCHEMATHESIS,
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        # Valid JSON-schema text can still be refused by rules a schema cannot state (printable characters,
        # the configured length after trimming, the blocklist); refusals are checked for being documented.
        "--exclude-checks",
        "positive_data_acceptance",
        # Event streams never end; tests/api/test_sse.py covers them.
        "--exclude-path-regex",
        "/events$",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--no-color",
        *extra,
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


def generated(report: str) -> int:
    found = re.search(r"(\d+) generated, (\d+) passed", report)
    assert found is not None, report[-3000:]
    assert found.group(1) == found.group(2) or "skipped" in report, report[-3000:]
    return int(found.group(1))


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("credential", ["operator key", "no key"])
async def test_fuzzing_the_openapi_document_finds_no_server_error_and_no_undocumented_answer(
    start_server, tmp_path, credential
):
    server = await start_server(api_key=OPERATOR_KEY, client_sends_key=True, submit_rate=30)
    await server.create("n123ab")  # the documented example id, so operations also meet a real banner
    headers = ["-H", f"Authorization: Bearer {OPERATOR_KEY}"] if credential == "operator key" else []
    code, report = await run_schemathesis(server.url, tmp_path, *headers)
    assert code == 0, report[-6000:]
    count = generated(report)
    print(f"schemathesis ({credential}): {count} test cases, all passed")
    assert count >= 100
    assert "Traceback" not in report
