"""Every malformed request gets a 4xx problem response and changes nothing."""

from __future__ import annotations

import pytest

JSON = {"Content-Type": "application/json"}
MESSAGE = "/api/v1/banners/b1/message"

CASES = [
    # (name, method, path, raw body, headers, expected status)
    ("malformed json", "POST", MESSAGE, b'{"text": ', JSON, 400),
    ("not utf-8", "POST", MESSAGE, b'{"text": "\xff\xfe"}', JSON, 400),
    ("empty body", "POST", MESSAGE, b"", JSON, 422),
    ("json array", "POST", MESSAGE, b'["text"]', JSON, 422),
    ("json string", "POST", MESSAGE, b'"hello"', JSON, 422),
    ("null body", "POST", MESSAGE, b"null", JSON, 422),
    ("text is a number", "POST", MESSAGE, b'{"text": 5}', JSON, 422),
    ("text is a list", "POST", MESSAGE, b'{"text": ["a"]}', JSON, 422),
    ("text is null", "POST", MESSAGE, b'{"text": null}', JSON, 422),
    ("missing text", "POST", MESSAGE, b"{}", JSON, 422),
    ("unknown field", "POST", MESSAGE, b'{"text": "a", "color": "red"}', JSON, 422),
    ("empty text", "POST", MESSAGE, b'{"text": "   "}', JSON, 422),
    ("too long", "POST", MESSAGE, b'{"text": "' + b"x" * 65 + b'"}', JSON, 422),
    ("control char", "POST", MESSAGE, b'{"text": "a\\u0007b"}', JSON, 422),
    ("newline", "POST", MESSAGE, b'{"text": "a\\nb"}', JSON, 422),
    ("deep nesting", "POST", MESSAGE, b'{"text": ' + b"[" * 100_00 + b"]" * 100_00 + b"}", JSON, 413),
    ("nesting under limit", "POST", MESSAGE, b'{"text": ' + b"[" * 3000 + b"]" * 3000 + b"}", JSON, 400),
    ("oversized body", "POST", MESSAGE, b'{"text": "' + b"x" * 20_000 + b'"}', JSON, 413),
    ("text/plain", "POST", MESSAGE, b"hello", {"Content-Type": "text/plain"}, 415),
    ("no content type", "POST", MESSAGE, b'{"text": "a"}', {}, 415),
    ("form body", "POST", MESSAGE, b"text=a", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ("uppercase id", "POST", "/api/v1/banners/B1/message", b'{"text": "a"}', JSON, 422),
    ("id with dot", "GET", "/api/v1/banners/a.b", b"", {}, 422),
    ("id too long", "GET", "/api/v1/banners/" + "a" * 65, b"", {}, 422),
    ("encoded slash id", "GET", "/api/v1/banners/a%2Fb", b"", {}, 404),
    ("bad If-Match", "POST", MESSAGE, b'{"text": "a"}', {**JSON, "If-Match": "yesterday"}, 400),
    ("bad Idempotency-Key", "POST", MESSAGE, b'{"text": "a"}', {**JSON, "Idempotency-Key": "has space"}, 400),
    ("create: bad id", "POST", "/api/v1/banners", b'{"id": "No Way", "name": "x"}', JSON, 422),
    ("create: empty name", "POST", "/api/v1/banners", b'{"id": "b2", "name": ""}', JSON, 422),
    ("create: control in name", "POST", "/api/v1/banners", b'{"id": "b2", "name": "a\\u0000"}', JSON, 422),
    ("create: id as number", "POST", "/api/v1/banners", b'{"id": 7, "name": "x"}', JSON, 422),
    (
        "create: extra field",
        "POST",
        "/api/v1/banners",
        b'{"id": "b2", "name": "x", "admin": true}',
        JSON,
        422,
    ),
    ("list: limit zero", "GET", "/api/v1/banners?limit=0", b"", {}, 422),
    ("list: limit too big", "GET", "/api/v1/banners?limit=501", b"", {}, 422),
    ("list: limit not a number", "GET", "/api/v1/banners?limit=ten", b"", {}, 422),
    ("list: after too long", "GET", "/api/v1/banners?after=" + "a" * 65, b"", {}, 422),
    ("unknown route", "GET", "/api/v1/nothing", b"", {}, 404),
    ("wrong method", "PUT", "/api/v1/banners/b1", b"", {}, 405),
]


@pytest.mark.parametrize(
    ("name", "method", "path", "body", "headers", "status"), CASES, ids=[c[0] for c in CASES]
)
async def test_malformed_request_gets_a_problem_and_changes_nothing(
    server, name, method, path, body, headers, status
):
    await server.create("b1")
    response = await server.client.request(method, path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert "Traceback" not in response.text
    after = (await server.client.get("/api/v1/banners/b1")).json()
    assert after["version"] == 1 and after["message"] is None
    listing = (await server.client.get("/api/v1/banners")).json()
    assert [b["id"] for b in listing["items"]] == ["b1"]


async def test_chunked_oversized_body_is_refused(server):
    await server.create("b1")

    async def chunks():
        yield b'{"text": "'
        for _ in range(40):
            yield b"x" * 1024
        yield b'"}'

    response = await server.client.post(MESSAGE, content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert (await server.client.get("/api/v1/banners/b1")).json()["version"] == 1
