"""The submit fast path (api/_submit.py) answers exactly as the documented FastAPI route does.

httpx sends a bytes body with Content-Length (fast path) and an async-iterator body chunked, without one
(the fast path leaves those to the route), so each case runs once down each path and the answers are
compared: status, problem type, the headers that matter, and the banner afterwards.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from airdisplay.access import KeysFile, Role

SECURITY = ("x-content-type-options", "x-frame-options", "content-security-policy", "referrer-policy")


async def chunked(body: bytes):
    yield body


async def send(server, path: str, body: bytes, headers: dict[str, str], *, fast: bool):
    content = body if fast else chunked(body)
    return await server.client.post(
        path, content=content, headers={"Content-Type": "application/json", **headers}
    )


def summary(response) -> dict[str, object]:
    data = response.json()
    return {
        "status": response.status_code,
        "type": data.get("type") if response.status_code >= 400 else None,
        "content-type": response.headers["content-type"],
        "etag": "etag" in response.headers,
        "retry-after": "retry-after" in response.headers,
        "replayed": response.headers.get("idempotent-replayed"),
        "security": all(name in response.headers for name in SECURITY),
    }


CASES = [
    ("accepted", b'{"text": "hello"}', {}),
    ("malformed json", b'{"text": ', {}),
    ("unknown field", b'{"text": "a", "x": 1}', {}),
    ("empty text", b'{"text": "   "}', {}),
    ("blocked text", b'{"text": "forbidden"}', {}),
    ("bad if-match", b'{"text": "a"}', {"If-Match": "yesterday"}),
    ("stale if-match", b'{"text": "a"}', {"If-Match": '"99"'}),
    ("bad idempotency key", b'{"text": "a"}', {"Idempotency-Key": "has space"}),
    ("bad key", b'{"text": "a"}', {"Authorization": "Bearer nope"}),
]


@pytest.mark.parametrize(("name", "body", "headers"), CASES, ids=[c[0] for c in CASES])
async def test_fast_path_and_route_give_the_same_answers(start_server, tmp_path, name, body, headers):
    (tmp_path / "blocklist.txt").write_text("forbidden\n")
    server = await start_server(blocklist=tmp_path / "blocklist.txt")
    answers = {}
    for fast in (True, False):
        banner = f"p-{name.replace(' ', '-').replace('-', '')[:20]}-{int(fast)}"
        await server.create(banner)
        response = await send(server, f"/api/v1/banners/{banner}/message", body, headers, fast=fast)
        after = (await server.client.get(f"/api/v1/banners/{banner}")).json()
        answers[fast] = (summary(response), after["version"], after["message"] is not None)
    assert answers[True] == answers[False]


async def test_busy_replayed_and_unknown_banner_answer_alike(server):
    for fast in (True, False):
        banner = f"q{int(fast)}"
        await server.create(banner)
        path = f"/api/v1/banners/{banner}/message"
        first = await send(server, path, b'{"text": "one"}', {"Idempotency-Key": "k1"}, fast=fast)
        replay = await send(server, path, b'{"text": "one"}', {"Idempotency-Key": "k1"}, fast=fast)
        busy = await send(server, path, b'{"text": "two"}', {}, fast=fast)
        missing = await send(server, "/api/v1/banners/nobody/message", b'{"text": "x"}', {}, fast=fast)
        assert first.status_code == 201 and replay.status_code == 201
        assert replay.headers["idempotent-replayed"] == "true" and replay.json() == first.json()
        free_at = datetime.fromisoformat(busy.json()["free_at"])
        assert busy.status_code == 409 and free_at == datetime.fromisoformat(
            first.json()["message"]["expires_at"]
        )
        assert int(busy.headers["retry-after"]) >= 59
        assert missing.status_code == 404


async def test_rate_limit_and_key_policy_apply_on_both_paths(start_server, tmp_path):
    _, submitter = KeysFile(tmp_path).create(Role.SUBMITTER)
    server = await start_server(api_key="op", submit_access="key", submit_rate=60, submit_burst=2)
    for fast in (True, False):
        await server.client.post(
            "/api/v1/banners",
            json={"id": f"r{int(fast)}", "name": "R"},
            headers={"Authorization": "Bearer op"},
        )
    for fast in (True, False):
        path = f"/api/v1/banners/r{int(fast)}/message"
        assert (await send(server, path, b'{"text": "x"}', {}, fast=fast)).status_code == 401
    auth = {"Authorization": f"Bearer {submitter}"}
    codes = [
        (
            await send(server, f"/api/v1/banners/r{i % 2}/message", b'{"text": "x"}', auth, fast=i % 2 == 0)
        ).status_code
        for i in range(3)
    ]
    assert codes[2] == 429  # one bucket per key, whichever path served the request
    assert json.loads((await server.client.get("/api/v1/banners/r0")).text)["message"] is not None
