"""`airdisplay history export` against a real server: CSV on stdout, progress on stderr, one-line errors."""

from __future__ import annotations

import asyncio
import csv
import io
import os

from tests.conftest import AIRDISPLAY

KEY = "k" * 32


async def export(url: str, *args: str, key: str | None = KEY) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRDISPLAY_")}
    if key is not None:
        env["AIRDISPLAY_OPERATOR_KEY"] = key
    proc = await asyncio.create_subprocess_exec(
        *AIRDISPLAY,
        "history",
        "export",
        "--url",
        url,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_export_writes_what_the_fleet_showed_as_csv(start_server):
    server = await start_server(api_key=KEY, client_sends_key=True, message_seconds=60)
    for banner_id, text in [("a1", 'Hello, "world"'), ("b2", "Zürich, 14:03")]:
        await server.create(banner_id)
        assert (
            await server.client.post(f"/api/v1/banners/{banner_id}/message", json={"text": text})
        ).status_code == 201
        # In the fleet's history once it ended.
        assert (await server.client.delete(f"/api/v1/banners/{banner_id}/message")).status_code == 200
    code, out, err = await export(server.url, "--since", "2000-01-01T00:00:00Z")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["banner_id"], r["text"], r["ended"]) for r in rows] == [
        ("a1", 'Hello, "world"', "cleared"),
        ("b2", "Zürich, 14:03", "cleared"),
    ]
    assert all(r["by"].startswith("key:") and r["shown_at"] for r in rows)
    assert err.strip().endswith("2 entries exported")


async def test_export_without_the_operator_key_stops_with_one_line(start_server):
    server = await start_server(api_key=KEY, message_seconds=60)
    code, out, err = await export(server.url, "--since", "2000-01-01T00:00:00Z", key=None)
    assert code == 2 and err.count("\n") == 1 and "401" in err
    code, _, err = await export(server.url, "--since", "yesterday")
    assert code == 2 and "is not a date and time" in err
