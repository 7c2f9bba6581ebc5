"""The suite on a machine without redis-server, Chromium, Prometheus or Dapr's binaries, as a non-root
developer has it.

Their tests must skip and say why, and leave nothing behind that fails a later test: a socket opened before
a skip once surfaced as a ResourceWarning (an error here) in whichever test the garbage collector ran in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Tests that need each missing part, and the tests around them that need none (test_dapr_host runs the
#: app against the daprd double on the real Redis, and some of its tests need no Redis at all).
SUBSET = [
    "tests/runtimes/dapr/test_dapr_host.py",
    "tests/runtimes/dapr/test_real_cluster.py",
    "tests/web/test_docs_page.py",
    "tests/test_monitoring.py",
]
#: The subset takes ~5 s on a loaded 2-core machine.
RUN_SECONDS = 50


@pytest.mark.slow
def test_tests_needing_redis_chromium_prometheus_or_dapr_skip_cleanly_without_them(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    # Only the venv's own commands: no redis-server, chromium or go on this PATH.
    env["PATH"] = str(Path(sys.executable).parent)
    env["AIRDISPLAY_DAPR_BIN"] = str(tmp_path / "no-dapr")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *SUBSET],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert "redis-server is not installed" in report
    assert "no Chromium" in report
    assert "not found in" in report and "run `make dapr`" in report
    assert "no promtool" in report and "no prometheus" in report
    assert " passed" in report  # the tests that need none of them still ran
