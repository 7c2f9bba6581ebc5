"""Submitting a message: the one flow behind the documented route, and its fast path.

`POST /api/v1/banners/{id}/message` is the product's hot path. FastAPI's request machinery (routing,
dependency solving, validation) cost more than the actor turn and the durable write together: with every
submit through the FastAPI route the server answers 967 req/s, with this fast path 2,191 (2.3x; bare FastAPI
3,457-3,536 in the same runs; `bench/submit_vs_bare.py [--no-fast-path]`,
docs/benchmarks/results/submit_fast_path_{on,off}.md). So
`SubmitFastPath` serves well-formed submits itself, in front of the middleware stack (the app's `__call__`,
see app.py), and hands everything else to the documented FastAPI route (routes/banners.py), which answers
its errors the usual way. Both read the body with `read_submit` and call `submit_flow`, in the same order
(credential and rate limit, body, headers, text policy, the actor's answer), so the answers cannot drift
apart: tests/api/test_submit_paths.py sends each case down both paths, and the schemathesis test fuzzes the
served behaviour against the document.
"""

from __future__ import annotations

import inspect
import re
from typing import NoReturn

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from pydantic import ValidationError
from pydantic_core import from_json
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ..domain import BANNER_ID_PATTERN, Banner, BannerBusy, SubmitOutcome
from ..runtimes import BannerRuntime
from ._access import AccessControl
from ._headers import SECURITY_HEADERS, SecurityHeaders
from ._limits import BodySizeLimit
from .deps import is_json_media
from .problems import ProblemError
from .schemas import MessageSubmit

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_ETAG_VERSION = re.compile(r'^\s*(?:W/)?"?(\d{1,18})"?\s*$')
_PATH = re.compile(r"^/api/v1/banners/([^/]+)/message$")
_BANNER_ID = re.compile(BANNER_ID_PATTERN)


#: A UTF-8 byte order mark. RFC 8259 (section 8.1) forbids sending one and lets a parser ignore one; Windows
#: tools still write it (PowerShell 5's Out-File, Notepad), so both paths ignore it.
_BOM = b"\xef\xbb\xbf"


def read_submit(body: bytes) -> MessageSubmit:
    """The submit body as both paths read it; RequestValidationError (400 or 422 problem) if it is none.

    JSON is read as RFC 8259 says: UTF-8 only (UTF-16, invalid UTF-8 and escaped lone surrogates are
    malformed: 400), a leading BOM ignored, no NaN or Infinity (400), nesting at most 200 deep (the parser's
    limit; 400 beyond). A repeated key counts once, the last, as JavaScript and Python read it (an earlier
    value is dropped unchecked, even a NaN). No body at all is a missing body (422); whitespace alone is
    malformed (400), as on every other route. A valid body costs one validator call: the rest runs only
    for refused ones.
    """
    try:
        return MessageSubmit.model_validate_json(body)
    except ValidationError as exc:
        if not body.startswith(_BOM):
            _refuse(body, exc)
    body = body[len(_BOM) :]
    try:
        return MessageSubmit.model_validate_json(body)
    except ValidationError as exc:
        _refuse(body, exc)


def _refuse(body: bytes, exc: ValidationError) -> NoReturn:
    """Raise the problem for a body the validator refused, by RFC 8259 where its parser reads otherwise."""
    if not body:
        raise RequestValidationError([{"loc": ("body",), "msg": "Field required", "type": "missing"}])
    # The validator's parser takes NaN and Infinity (no field here takes a number, so they are refused
    # anyway); a strict parse of the refused body tells whether it was malformed JSON rather than invalid.
    if b"NaN" in body or b"Infinity" in body:
        try:
            from_json(body, allow_inf_nan=False)
        except ValueError as bad:
            raise RequestValidationError(
                [{"loc": ("body",), "msg": f"Invalid JSON: {bad}", "type": "json_invalid"}]
            ) from None
    raise RequestValidationError(
        [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
    ) from None


async def submit_body(request: Request) -> MessageSubmit:
    """The route's body, read after the credential checks (its dependencies), as the fast path reads it."""
    return read_submit(await request.body())


def banner_response(banner: Banner, status_code: int = 200, body: bytes | None = None) -> Response:
    """The banner as the answer; `body` is its JSON when the caller has it (the bytes its actor stored)."""
    return Response(
        banner.model_dump_json() if body is None else body,
        status_code=status_code,
        media_type="application/json",
        headers={"ETag": f'"{banner.version}"'},
    )


def expected_version(if_match: str | None) -> int | None:
    """The version an If-Match header names; None for no header or `*`; 400 if it names none.

    An empty If-Match is a 400 too, not "no header": a client that sends one means a precondition, and
    dropping it would turn a conditional write into an unconditional one."""
    if if_match is None or if_match.strip() == "*":
        return None
    found = _ETAG_VERSION.match(if_match)
    if found is None:
        raise ProblemError(400, "Bad If-Match", 'If-Match must be a banner version such as "7"', "bad-header")
    return int(found.group(1))


def valid_idempotency_key(key: str | None) -> None:
    """400 for an Idempotency-Key that is not 1-255 visible ASCII characters."""
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise ProblemError(
            400, "Bad Idempotency-Key", "Idempotency-Key must be 1-255 visible ASCII characters", "bad-header"
        )


async def submit_flow(
    access: AccessControl,
    runtime: BannerRuntime,
    banner_id: str,
    text: str,
    *,
    idempotency_key: str | None,
    if_match: str | None,
    by: str | None = None,
) -> SubmitOutcome:
    """Show `text` on the banner unless one is showing; an exception names the problem if not. `by` is
    who sends it (`AccessControl.who`), for the banner's history."""
    if idempotency_key is not None:
        valid_idempotency_key(idempotency_key)
    version = None if if_match is None else expected_version(if_match)
    access.check_text(text)
    try:
        outcome = await runtime.submit_message(
            banner_id, text, idempotency_key=idempotency_key, expected_version=version, by=by
        )
    except BannerBusy:
        access.metrics.busy.inc()
        raise
    access.metrics.accepted.inc()
    return outcome


def submitted_response(outcome: SubmitOutcome) -> Response:
    """The 201 answer to a submit."""
    response = banner_response(outcome.banner, 201, outcome.json)
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


class _SubmitRoute:
    """What the router would have put in the scope as the request's route: its template."""

    path = "/api/v1/banners/{banner_id}/message"


SUBMIT_ROUTE = _SubmitRoute()


class SubmitFastPath:
    """Serve well-formed `POST /api/v1/banners/{id}/message` requests without FastAPI's machinery.

    `AirDisplayAPI` asks `handles` first, before any middleware runs; this path then applies what the
    middlewares would (body size, security headers) itself. It takes: a slug id, a JSON content type, a
    Content-Length within the limit, and no cross-origin request when CORS is on. Anything else goes to
    the documented route unchanged, which answers its problems the usual way. Problems met here are
    answered by the app's own exception handlers, so they are the same problem+json documents.
    """

    #: The middlewares whose effect this path reproduces (the body limit, the security headers) or leaves
    #: to the route (CORS: cross-origin requests are not taken). A middleware added to the app that is not
    #: here would silently skip the hottest route: tests/api/test_submit_paths.py fails until it is.
    APPLIES = frozenset({BodySizeLimit, SecurityHeaders, CORSMiddleware})

    def __init__(self, api: FastAPI, max_body_bytes: int, cors: bool) -> None:
        self.api = api
        self.max_body_bytes = max_body_bytes
        self.cors = cors

    def handles(self, scope: Scope) -> str | None:
        """The banner id when this path serves the request, else None (nothing has been read)."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        found = _PATH.match(scope["path"])
        if found is None or not _BANNER_ID.match(found.group(1)):
            return None
        length = content_type = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = content_type or value
            elif name == b"content-length":
                length = length or value
            elif name == b"origin" and self.cors:
                return None
        if not is_json_media(_text(content_type)) or length is None or not length.isdigit():
            return None
        return found.group(1) if int(length) <= self.max_body_bytes else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send, banner_id: str) -> int:
        """Serve the request; returns the response's status (for the latency histogram, api/app.py)."""
        scope["app"] = self.api
        scope["route"] = SUBMIT_ROUTE  # for metrics and spans (api/_observe.py), as the router would
        scope["path_params"] = {"banner_id": banner_id}
        request = Request(scope, receive)
        try:
            outcome = await self._submit(request, banner_id, _headers(scope), receive)
        except Exception as exc:  # every problem is answered by the app's own handlers
            response = await self._problem(request, exc)
            names = {name for name, _ in response.raw_headers}
            response.raw_headers.extend(h for h in SECURITY_HEADERS if h[0] not in names)
            await response(scope, receive, send)
            return response.status_code
        # The 201 as raw ASGI messages: the same bytes banner_response() gives, without building a Response;
        # the body is the banner as its actor stored it (serialised once, for the store, frames and this).
        body = outcome.json
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"etag", b'"%d"' % outcome.banner.version),
            *SECURITY_HEADERS,
        ]
        if outcome.replayed:
            headers.append((b"idempotent-replayed", b"true"))
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return 201

    async def _submit(
        self, request: Request, banner_id: str, headers: dict[bytes, bytes], receive: Receive
    ) -> SubmitOutcome:
        state = self.api.state
        access: AccessControl = state.access
        authorization = _text(headers.get(b"authorization"))
        access.admit_submit(request, authorization)
        submit = read_submit(await _read_body(receive, self.max_body_bytes))
        return await submit_flow(
            access,
            state.runtime,
            banner_id,
            submit.text,
            idempotency_key=_text(headers.get(b"idempotency-key")),
            if_match=_text(headers.get(b"if-match")),
            by=access.who(request, authorization),
        )

    async def _problem(self, request: Request, exc: Exception) -> Response:
        for kind in type(exc).__mro__:
            handler = self.api.exception_handlers.get(kind)
            if handler is not None:
                answer = handler(request, exc)
                response: Response = await answer if inspect.isawaitable(answer) else answer
                return response
        raise exc


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The request headers by lower-case name (ASGI servers send names in lower case); the first wins,
    as with Starlette's `Headers.get`."""
    return dict(reversed(scope["headers"]))


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            raise ProblemError(400, "Request aborted", "the client went away mid-body", "aborted")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:  # more than its Content-Length said
            raise HTTPException(413, f"request bodies are limited to {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
