"""The OpenAPI document, completed with every problem response a route can give.

FastAPI documents a 422 as `application/json` and nothing else; clients (and schemathesis, which the test
suite runs against this document) need each status code a route really answers, as problem+json. Codes
that follow from an operation's parameters are added here; routes declare the rest (access, JSON body)
with the constants below.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .problems import PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem: `type` names the problem, `detail` says what to do about it.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
    "additionalProperties": True,
}

_MEANING = {
    400: "Malformed JSON or a bad header",
    401: "No valid key for this route",
    403: "The key's role may not do this",
    404: "No such banner",
    409: "Conflict",
    412: "Precondition failed",
    413: "The body is larger than the server accepts",
    415: "The body is not JSON",
    422: "The request is well-formed but not valid",
    429: "This client is over its limit; `Retry-After` says when to try again",
    503: "The service or its storage cannot take the request now; `Retry-After` may say when",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for problems a route gives beyond what its parameters imply."""
    return {code: {"description": _MEANING[code]} for code in codes}


#: What the access rules (api/_access.py) and the JSON body checks add to a route. Every route that
#: reads a key answers 401 for one that is not valid, even where none is needed (KEY_PROBLEMS).
KEY_PROBLEMS = problem_responses(401)
OPERATOR_PROBLEMS = problem_responses(401, 403)
SUBMIT_PROBLEMS = problem_responses(401, 403, 429)
JSON_BODY_PROBLEMS = problem_responses(400, 413, 415)
STREAM_PROBLEMS = problem_responses(429)


def _implied_codes(path: str, operation: dict[str, Any]) -> set[int]:
    """Problems that follow from what an operation takes: parameters, a body, a banner id, the store."""
    params = operation.get("parameters", [])
    codes = {503} if path != "/healthz" else set()
    if params or "requestBody" in operation:
        codes.add(422)
    if any(p["in"] == "header" for p in params):
        codes.add(400)
    if any(p["in"] == "path" and p["name"] == "banner_id" for p in params):
        codes.add(404)
    return codes


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` document problem responses on every route."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        components["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key (airdisplay keys create)",
            }
        }
        for name in ("HTTPValidationError", "ValidationError"):
            schema["components"]["schemas"].pop(name, None)
        problem_content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                documented = {int(c) for c in responses if c[0] in "45"}
                for code in sorted(_implied_codes(path, operation) | documented):
                    entry = responses.setdefault(str(code), {})
                    if code == 422 or not entry.get("description"):
                        entry["description"] = _MEANING.get(code, "Error")
                    entry["content"] = problem_content
                if "401" in responses:
                    # Routes that check a role (403) need a key, except submitting, which is open by default
                    # and rate-limited (429; docs/security.md). Elsewhere a key is optional but checked.
                    # A route may say so itself (cancelling a booking: its cancel token or an operator key).
                    needs_key = "403" in responses and "429" not in responses
                    operation.setdefault("security", [{"bearer": []}] if needs_key else [{}, {"bearer": []}])
                if path.endswith("/events"):
                    responses["200"] = {
                        "description": "Server-Sent Events: `event: banner`, `id: <banner>:<version>`",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
