"""Who may do what, against a real server: roles, keys from the CLI's keys file, rate and stream limits."""

from __future__ import annotations

import asyncio
import os
import stat

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from airdisplay.access import KeysFile, Role
from tests.conftest import bearer, eventually

OPERATOR_ENV_KEY = "operator-key-from-the-environment"

#: Every operator route: (method, path, JSON body). `b1` exists when they are called.
OPERATOR_ROUTES = [
    ("POST", "/api/v1/banners", {"id": "b2", "name": "New"}),
    ("DELETE", "/api/v1/banners/b1", None),
    ("DELETE", "/api/v1/banners/b1/message", None),
    ("POST", "/api/v1/banners/b1/device-token", None),
    ("GET", "/metrics", None),
]
_ROUTE_IDS = [f"{m} {p}" for m, p, _ in OPERATOR_ROUTES]


async def call(server, method: str, path: str, body: object = None, headers=None) -> httpx.Response:
    return await server.client.request(method, path, json=body, headers=headers)


@pytest.fixture
async def guarded(start_server, tmp_path):
    """A server with an operator key in the environment and a submitter key in its keys file."""
    _, submitter = KeysFile(tmp_path).create(Role.SUBMITTER, "kiosk")
    server = await start_server(api_key=OPERATOR_ENV_KEY)
    created = await call(
        server, "POST", "/api/v1/banners", {"id": "b1", "name": "B1"}, bearer(OPERATOR_ENV_KEY)
    )
    assert created.status_code == 201
    server.submitter_key = submitter
    return server


@pytest.mark.parametrize(("method", "path", "body"), OPERATOR_ROUTES, ids=_ROUTE_IDS)
async def test_operator_routes_refuse_missing_wrong_and_submitter_keys(guarded, method, path, body):
    before = (await guarded.client.get("/api/v1/banners/b1")).json()
    missing = await call(guarded, method, path, body)
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert (await call(guarded, method, path, body, bearer("not-a-key"))).status_code == 401
    assert (
        await call(guarded, method, path, body, {"Authorization": "Basic dXNlcjpwdw=="})
    ).status_code == 401
    forbidden = await call(guarded, method, path, body, bearer(guarded.submitter_key))
    assert forbidden.status_code == 403 and forbidden.json()["type"].endswith("/forbidden")
    assert (await guarded.client.get("/api/v1/banners/b1")).json() == before  # nothing changed
    allowed = await call(guarded, method, path, body, bearer(OPERATOR_ENV_KEY))
    assert allowed.status_code in (200, 201, 204), allowed.text


async def test_submitting_is_open_by_default_but_a_bad_key_is_refused(guarded):
    assert (await guarded.client.post("/api/v1/banners/b1/message", json={"text": "hi"})).status_code == 201
    await call(guarded, "DELETE", "/api/v1/banners/b1/message", headers=bearer(OPERATOR_ENV_KEY))
    refused = await guarded.client.post(
        "/api/v1/banners/b1/message", json={"text": "hi"}, headers=bearer("adk_000000000000_" + "x" * 43)
    )
    assert refused.status_code == 401
    assert (await guarded.client.get("/api/v1/banners/b1")).json()["message"] is None


async def test_key_protected_submitting_needs_a_submitter_or_operator_key(start_server, tmp_path):
    _, submitter = KeysFile(tmp_path).create(Role.SUBMITTER)
    server = await start_server(api_key=OPERATOR_ENV_KEY, submit_access="key")
    for banner in ("b1", "b2", "b3"):
        await call(
            server, "POST", "/api/v1/banners", {"id": banner, "name": banner}, bearer(OPERATOR_ENV_KEY)
        )
    assert (await server.client.post("/api/v1/banners/b1/message", json={"text": "x"})).status_code == 401
    assert (await server.client.post("/banner/b1", json={"message": "x"})).status_code == 401  # legacy too
    assert (await server.client.get("/api/v1/banners/b1")).json()["message"] is None
    ok = await server.client.post("/api/v1/banners/b2/message", json={"text": "x"}, headers=bearer(submitter))
    assert ok.status_code == 201
    op = await server.client.post(
        "/api/v1/banners/b3/message", json={"text": "x"}, headers=bearer(OPERATOR_ENV_KEY)
    )
    assert op.status_code == 201


async def test_keys_created_and_revoked_while_running_take_effect_without_a_restart(start_server, tmp_path):
    server = await start_server()
    keys = KeysFile(tmp_path)
    # No operator credential on a loopback server: operator routes are open (try-it-out mode).
    assert (await server.client.post("/api/v1/banners", json={"id": "a1", "name": "A"})).status_code == 201
    record, operator = keys.create(Role.OPERATOR, "ops")

    async def status_without_key() -> int:
        return (await server.client.post("/api/v1/banners", json={"id": "a2", "name": "A"})).status_code

    await eventually(status_without_key, lambda code: code == 401, what="operator routes closed")
    created = await server.client.post(
        "/api/v1/banners", json={"id": "a3", "name": "A"}, headers=bearer(operator)
    )
    assert created.status_code == 201
    keys.revoke(record.id)

    async def status_with_revoked_key() -> int:
        response = await server.client.get("/metrics", headers=bearer(operator))
        return response.status_code

    await eventually(status_with_revoked_key, lambda code: code == 401, what="revoked key refused")


async def test_the_keys_file_holds_hashes_only_and_is_private(tmp_path):
    record, key = KeysFile(tmp_path).create(Role.OPERATOR, "ops")
    text = (tmp_path / "keys.json").read_text()
    secret = key.split("_", 2)[2]
    assert secret not in text and record.secret_sha256 in text
    assert stat.S_IMODE(os.stat(tmp_path / "keys.json").st_mode) == 0o600


async def test_submit_rate_limit_answers_429_with_retry_after_per_client(start_server, tmp_path):
    _, submitter = KeysFile(tmp_path).create(Role.SUBMITTER)
    server = await start_server(api_key=OPERATOR_ENV_KEY, submit_rate=6, submit_burst=3)
    ids = [f"r{i}" for i in range(8)]
    for banner in ids:
        await call(
            server, "POST", "/api/v1/banners", {"id": banner, "name": banner}, bearer(OPERATOR_ENV_KEY)
        )
    codes = [
        (await server.client.post(f"/api/v1/banners/{b}/message", json={"text": "x"})).status_code
        for b in ids[:4]
    ]
    assert codes == [201, 201, 201, 429]
    limited = await server.client.post(f"/api/v1/banners/{ids[4]}/message", json={"text": "x"})
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 10
    assert limited.json()["type"].endswith("/rate-limited")
    assert (await server.client.get(f"/api/v1/banners/{ids[4]}")).json()["message"] is None
    # Another client (a submitter key has its own bucket) and the operator are not held up.
    other = await server.client.post(
        f"/api/v1/banners/{ids[5]}/message", json={"text": "x"}, headers=bearer(submitter)
    )
    assert other.status_code == 201
    for banner in ids[6:]:
        ok = await server.client.post(
            f"/api/v1/banners/{banner}/message", json={"text": "x"}, headers=bearer(OPERATOR_ENV_KEY)
        )
        assert ok.status_code == 201
    metrics = (await server.client.get("/metrics", headers=bearer(OPERATOR_ENV_KEY))).text
    assert 'airdisplay_messages_total{outcome="rate_limited"} 2.0' in metrics
    assert 'airdisplay_messages_total{outcome="accepted"} 6.0' in metrics


async def test_streams_per_client_are_capped_and_a_closed_one_frees_its_slot(start_server):
    server = await start_server(max_streams_per_client=2)
    ws_url = server.url.replace("http://", "ws://")
    first = await websockets.connect(ws_url + "/api/v1/stream")
    second = await websockets.connect(ws_url + "/ws")
    try:
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(ws_url + "/api/v1/stream")
        assert refused.value.response.status_code == 429
        sse = await server.client.get("/api/v1/events", params={"banners": "x1"})
        assert sse.status_code == 429 and sse.json()["type"].endswith("/too-many-streams")
    finally:
        await first.close()
    third = await eventually(
        lambda: _try_connect(ws_url + "/api/v1/stream"), lambda ws: ws is not None, what="slot freed"
    )
    await third.close()
    await second.close()


async def _try_connect(url: str):
    try:
        return await websockets.connect(url)
    except InvalidStatus:
        return None


async def test_a_flood_of_connections_does_not_stop_others_being_served(start_server):
    """200 connection attempts from one client, most refused, while the API keeps answering."""
    server = await start_server(max_streams_per_client=20)
    await server.create("f1")
    ws_url = server.url.replace("http://", "ws://") + "/api/v1/stream"
    results = await asyncio.gather(*(_try_connect(ws_url) for _ in range(200)))
    opened = [ws for ws in results if ws is not None]
    try:
        assert len(opened) == 20
        response = await server.client.post("/api/v1/banners/f1/message", json={"text": "still here"})
        assert response.status_code == 201
    finally:
        await asyncio.gather(*(ws.close() for ws in opened))


async def test_blocked_words_are_refused_with_the_reason_and_edits_apply_live(start_server, tmp_path):
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("# words this fleet will not fly\nbadword\nre:fo+bar\n", encoding="utf-8")
    server = await start_server(blocklist=blocklist)
    await server.create("c1")
    for text in ["BADWORD", "a ｂａｄｗｏｒｄ here", "bädword", "xx fooooBAR yy"]:
        refused = await server.client.post("/api/v1/banners/c1/message", json={"text": text})
        assert refused.status_code == 422, text
        assert refused.json()["type"].endswith("/text-not-allowed")
        assert "does not allow" in refused.json()["detail"]
    assert (await server.client.post("/banner/c1", json={"message": "badword"})).status_code == 422
    assert (await server.client.get("/api/v1/banners/c1")).json()["message"] is None
    blocklist.write_text("badword\nre:fo+bar\nnewword\n", encoding="utf-8")
    os.utime(blocklist, ns=(0, 10**18))  # an mtime the first load did not have, whatever the clock

    async def newword_status() -> int:
        return (await server.client.post("/api/v1/banners/c1/message", json={"text": "NewWord"})).status_code

    await eventually(newword_status, lambda code: code == 422, what="edited blocklist in force")
    await server.create("c2")
    ok = await server.client.post("/api/v1/banners/c2/message", json={"text": "badwords are fine"})
    assert ok.status_code == 201


async def test_security_headers_and_closed_cors_by_default(server):
    api = await server.client.get("/api/v1/banners")
    assert api.headers["x-content-type-options"] == "nosniff"
    assert api.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in api.headers["content-security-policy"]
    page = await server.client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    preflight = await server.client.options(
        "/api/v1/banners",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_configured_cors_origins_may_call_the_api(start_server):
    server = await start_server(cors_origins=("https://fleet.example",))
    preflight = await server.client.options(
        "/api/v1/banners/x/message",
        headers={
            "Origin": "https://fleet.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.headers["access-control-allow-origin"] == "https://fleet.example"
    other = await server.client.get("/api/v1/banners", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


#: Routes anyone may read; `b1` exists when they are called.
OPEN_READ_ROUTES = [
    "/api/v1/banners",
    "/api/v1/banners/b1",
    "/api/v1/banners/b1/events",
    "/api/v1/events?banners=b1",
    "/banners",
    "/banner/b1",
]
BAD_KEYS = {
    "unknown key": bearer("adk_000000000000_" + "x" * 43),
    "not a key": bearer("not-a-key"),
    "not bearer": {"Authorization": "Basic dXNlcjpwdw=="},
}


@pytest.mark.parametrize("path", OPEN_READ_ROUTES)
@pytest.mark.parametrize("credential", BAD_KEYS, ids=list(BAD_KEYS))
async def test_a_key_that_is_not_valid_is_refused_even_on_open_routes(guarded, path, credential):
    refused = await guarded.client.get(path, headers=BAD_KEYS[credential])
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["www-authenticate"].startswith("Bearer")
    async with guarded.client.stream("GET", path, headers=bearer(guarded.submitter_key)) as valid:
        assert valid.status_code == 200  # a valid key of any role reads them, as does no key
    async with guarded.client.stream("GET", path) as anonymous:
        assert anonymous.status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/stream", "/ws"])
async def test_a_key_that_is_not_valid_is_refused_at_the_stream_handshake(guarded, path):
    url = guarded.url.replace("http://", "ws://") + path
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url, additional_headers=bearer("not-a-key"))
    assert refused.value.response.status_code == 401
    assert not guarded.app.state.access.streams.open_streams()  # the refused one took no slot
    valid = await websockets.connect(url, additional_headers=bearer(guarded.submitter_key))
    await valid.close()
