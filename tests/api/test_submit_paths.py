"""The submit fast path (api/_submit.py) answers exactly as the documented FastAPI route does.

httpx sends a bytes body with Content-Length (fast path) and an async-iterator body chunked, without one
(the fast path leaves those to the route), so each case runs once down each path and the answers are
compared: status, the problem document, the headers that matter, and the banner afterwards. Each case
also names the answer both must give (the decisions are in `read_submit`'s docstring).
"""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime

import pytest

from airdisplay.access import KeysFile, Role
from airdisplay.runtimes.behaviour import split_stored

SECURITY = ("x-content-type-options", "x-frame-options", "content-security-policy", "referrer-policy")


async def chunked(body: bytes):
    yield body


async def send(server, path: str, body: bytes, headers: dict[str, str], *, fast: bool):
    content = body if fast else chunked(body)
    return await server.client.post(
        path, content=content, headers={"Content-Type": "application/json", **headers}
    )


def taken_by_fast_path(server) -> list[bool]:
    """Record, per submit request, whether the fast path took it (the premise of these tests)."""
    fast = server.app.fast_submit
    handles = fast.handles
    taken: list[bool] = []

    def recording(scope):
        banner_id = handles(scope)
        if scope["type"] == "http" and scope["path"].endswith("/message"):
            taken.append(banner_id is not None)
        return banner_id

    fast.handles = recording
    return taken


def summary(response, banner: str = "") -> dict[str, object]:
    data = json.loads(response.text.replace(banner, "{banner}")) if banner else response.json()
    failed = response.status_code >= 400
    return {
        "status": response.status_code,
        # The problem document (with the banner's id made alike); the text shown for a 201.
        "problem": {k: data.get(k) for k in ("type", "title", "detail", "errors")} if failed else None,
        "text": None if failed else data["message"]["text"],
        "content-type": response.headers["content-type"],
        "etag": "etag" in response.headers,
        "retry-after": "retry-after" in response.headers,
        "replayed": response.headers.get("idempotent-replayed"),
        "security": all(name in response.headers for name in SECURITY),
    }


JSON_TEXT = b'{"text": "a"}'
NESTED = b'{"text": "a", "x": ' + b"[" * 300 + b"]" * 300 + b"}"
CASES = [
    # (name, body, headers, the status both paths give)
    ("accepted", b'{"text": "hello"}', {}, 201),
    ("malformed json", b'{"text": ', {}, 400),
    ("unknown field", b'{"text": "a", "x": 1}', {}, 422),
    ("empty text", b'{"text": "   "}', {}, 422),
    ("no text at all", b'{"text": ""}', {}, 422),
    ("blocked text", b'{"text": "forbidden"}', {}, 422),
    ("bad if-match", JSON_TEXT, {"If-Match": "yesterday"}, 400),
    ("empty if-match", JSON_TEXT, {"If-Match": ""}, 400),
    ("stale if-match", JSON_TEXT, {"If-Match": '"99"'}, 412),
    ("bad idempotency key", JSON_TEXT, {"Idempotency-Key": "has space"}, 400),
    ("bad key", JSON_TEXT, {"Authorization": "Bearer nope"}, 401),
    # The credential is checked before the body is read, on both paths.
    ("bad key and bad json", b'{"text": ', {"Authorization": "Bearer nope"}, 401),
    # RFC 8259 8.1: a parser MAY ignore a byte order mark; both do.
    ("utf8 bom", b'\xef\xbb\xbf{"text": "hello"}', {}, 201),
    ("only a bom", b"\xef\xbb\xbf", {}, 422),
    # JSON between systems is UTF-8 (RFC 8259 8.1); the route used to guess UTF-16 and accept it.
    ("utf16", '{"text": "hello"}'.encode("utf-16"), {}, 400),
    (
        "utf16 charset",
        '{"text": "hello"}'.encode("utf-16-le"),
        {"Content-Type": "application/json; charset=utf-16"},
        400,
    ),
    ("invalid utf8", b'{"text": "a\xffb"}', {}, 400),
    ("utf8 surrogate bytes", b'{"text": "a\xed\xa0\x80b"}', {}, 400),
    ("lone surrogate", b'{"text": "a\\ud800b"}', {}, 400),
    ("surrogate pair", b'{"text": "a\\ud83d\\ude00b"}', {}, 201),
    ("nan", b'{"text": NaN}', {}, 400),
    ("infinity elsewhere", b'{"text": "a", "x": -Infinity}', {}, 400),
    ("nan in the text", b'{"text": "NaN Infinity"}', {}, 201),
    ("duplicate keys", b'{"text": "first", "text": "second"}', {}, 201),
    ("deep nesting", NESTED, {}, 400),
    ("empty body", b"", {}, 422),
    ("whitespace body", b" \n ", {}, 400),
    ("null body", b"null", {}, 422),
    ("array body", b'["text"]', {}, 422),
    ("trailing garbage", b'{"text": "a"} x', {}, 400),
    ("charset utf8", JSON_TEXT, {"Content-Type": "application/json; charset=utf-8"}, 201),
    ("upper case type", JSON_TEXT, {"Content-Type": "Application/JSON"}, 201),
    ("plus json type", JSON_TEXT, {"Content-Type": "application/vnd.airdisplay+json"}, 201),
    ("text at payload limit", b'{"text": "' + b"a" * 1001 + b'"}', {}, 422),
]


@pytest.mark.parametrize(("name", "body", "headers", "status"), CASES, ids=[c[0] for c in CASES])
async def test_fast_path_and_route_give_the_same_answers(start_server, tmp_path, name, body, headers, status):
    (tmp_path / "blocklist.txt").write_text("forbidden\n")
    server = await start_server(blocklist=tmp_path / "blocklist.txt")
    taken = taken_by_fast_path(server)
    answers = {}
    for fast in (True, False):
        banner = f"p-{re.sub('[^a-z0-9]', '', name)[:20]}-{int(fast)}"
        await server.create(banner)
        response = await send(server, f"/api/v1/banners/{banner}/message", body, headers, fast=fast)
        after = (await server.client.get(f"/api/v1/banners/{banner}")).json()
        answers[fast] = (summary(response, banner), after["version"], after["message"] is not None)
    assert taken == [True, False], "each case must run once down each path"
    assert answers[True] == answers[False]
    assert answers[True][0]["status"] == status, answers[True]


JSON_TYPE = ("Content-Type", "application/json")
REPEATED = [
    # (name, header lines, the status both give): the first line of a repeated header counts on both paths.
    ("if-match", [JSON_TYPE, ("If-Match", '"1"'), ("If-Match", "bad")], 201),
    ("if-match bad first", [JSON_TYPE, ("If-Match", "bad"), ("If-Match", '"1"')], 400),
    ("json type first", [JSON_TYPE, ("Content-Type", "text/plain")], 201),
    ("json type second", [("Content-Type", "text/plain"), JSON_TYPE], 415),
]


@pytest.mark.parametrize(("name", "lines", "status"), REPEATED, ids=[c[0] for c in REPEATED])
async def test_a_repeated_header_is_read_alike_on_both_paths(server, name, lines, status):
    codes = []
    for fast in (True, False):
        banner = f"h-{re.sub('[^a-z0-9]', '', name)}-{int(fast)}"
        await server.create(banner)
        response = await server.client.post(
            f"/api/v1/banners/{banner}/message",
            content=JSON_TEXT if fast else chunked(JSON_TEXT),
            headers=lines,
        )
        codes.append(response.status_code)
    assert codes == [status, status]


async def test_a_malformed_body_costs_a_submit_on_both_paths(start_server):
    """The rate limit is taken before the body is read: garbage counts against the client like a message."""
    server = await start_server(submit_rate=1, submit_burst=1)
    for fast in (True, False):
        await server.create(f"g{int(fast)}")
    codes = {}
    for fast in (True, False):
        path = f"/api/v1/banners/g{int(fast)}/message"
        headers = {"X-Forwarded-For": f"203.0.113.{int(fast)}"}  # one client per path
        garbage = await send(server, path, b'{"text": ', headers, fast=fast)
        then = await send(server, path, JSON_TEXT, headers, fast=fast)
        codes[fast] = (garbage.status_code, then.status_code)
    assert codes == {True: (400, 429), False: (400, 429)}


async def test_the_document_states_the_limits_the_server_enforces(server):
    spec = (await server.client.get("/openapi.json")).json()
    submit = spec["paths"]["/api/v1/banners/{banner_id}/message"]["post"]
    text = submit["requestBody"]["content"]["application/json"]["schema"]["properties"]["text"]
    assert text["minLength"] == 1 and text["maxLength"] == 1000
    assert "max_text_length" in text["description"] and "trimming" in text["description"]
    headers = {p["name"]: p for p in submit["parameters"] if p["in"] == "header"}
    assert "empty one included, is refused with 400" in headers["if-match"]["description"]
    assert "400" in headers["idempotency-key"]["description"] and "400" in submit["responses"]
    legacy = spec["components"]["schemas"]["LegacyUpdate"]["properties"]["message"]
    assert legacy["minLength"] == 1 and "max_text_length" in legacy["description"]


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


async def test_one_ipv6_client_gets_one_bucket_for_its_whole_64(start_server):
    """Through a trusted proxy (the test server trusts X-Forwarded-For from 127.0.0.1, uvicorn's default),
    so that the real stack sees IPv6 client addresses."""
    server = await start_server(submit_rate=1, submit_burst=2)
    for n in range(6):
        await server.create(f"v{n}")

    async def submit(n: int, address: str) -> int:
        headers = {"X-Forwarded-For": address}
        return (
            await send(server, f"/api/v1/banners/v{n}/message", JSON_TEXT, headers, fast=n % 2 == 0)
        ).status_code

    rotating = [await submit(n, f"2001:db8:7:7::{n + 1:x}") for n in range(3)]
    assert rotating == [201, 201, 429], "new addresses in the same /64 are the same client"
    assert await submit(3, "2001:db8:7:8::1") == 201, "the next /64 is another client"
    assert [await submit(n, f"192.0.2.{n}") for n in (4, 5)] == [201, 201]


@pytest.mark.parametrize("cors", [(), ("https://fleet.example",)], ids=["no CORS", "CORS"])
def test_every_middleware_of_the_app_is_one_the_fast_path_applies(tmp_path, cors):
    """The fast path runs in front of the middleware stack: a middleware it does not reproduce would skip
    the hottest route without a sound. Adding one means teaching the fast path (SubmitFastPath.APPLIES)."""
    from airdisplay.api import create_app
    from airdisplay.api._submit import SubmitFastPath
    from airdisplay.config import Settings

    app = create_app(Settings(data_dir=tmp_path, cors_origins=cors))
    added = {middleware.cls for middleware in app.user_middleware}
    assert added and added <= SubmitFastPath.APPLIES, added - SubmitFastPath.APPLIES


def test_the_fast_path_can_be_turned_off_for_the_benchmark(tmp_path):
    from airdisplay.api import create_app
    from airdisplay.config import Settings

    assert create_app(Settings(data_dir=tmp_path)).fast_submit is not None
    assert create_app(Settings(data_dir=tmp_path, submit_fast_path=False)).fast_submit is None


async def test_a_submit_serialises_its_banner_once_for_the_store_the_frame_and_the_reply(
    start_server, monkeypatch
):
    """Both paths answer with the bytes the actor stored and published (one `model_dump_json` a submit)."""
    from airdisplay.domain import Banner

    server = await start_server()
    published = []
    server.runtime.event_bus.subscribe(lambda event: published.append((event, event.frame)))
    calls = []
    dump = Banner.model_dump_json

    def counted(self, **kwargs):
        calls.append(self.version)
        return dump(self, **kwargs)

    monkeypatch.setattr(Banner, "model_dump_json", counted)
    for fast in (True, False):
        banner = f"once{int(fast)}"
        await server.create(banner)
        published.clear()
        calls.clear()
        response = await send(server, f"/api/v1/banners/{banner}/message", JSON_TEXT, {}, fast=fast)
        assert response.status_code == 201
        ((event, frame),) = published
        assert calls == [event.version], "the banner was serialised more than once"
        assert response.content == event.change.banner_json
        assert json.loads(frame)["banner"] == json.loads(event.change.banner_json)
        conn = sqlite3.connect(server.data_dir / "airdisplay.db")
        try:
            (stored,) = conn.execute(
                "SELECT value FROM actor_state WHERE actor_id=? AND key='banner'", (banner,)
            ).fetchone()
        finally:
            conn.close()
        # Stored: those bytes and the note of who sent it (runtimes/behaviour.py NOTE_FIELD).
        public, note = split_stored(stored)
        assert public == event.change.banner_json and note is not None and b'"by":"client:' in note
