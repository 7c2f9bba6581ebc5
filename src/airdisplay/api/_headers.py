"""Security headers on every HTTP response (the UI pages add their own Content-Security-Policy)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: For API answers: nothing may frame them, sniff them into another type, or learn where they came from.
#: Pages that set their own CSP (routes/ui.py) keep it.
_DEFAULTS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
)


#: The same, as raw ASGI header pairs.
SECURITY_HEADERS = [(name.lower().encode(), value.encode()) for name, value in _DEFAULTS]


class SecurityHeaders:
    """Add the default security headers to responses that do not set them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = message["headers"] = list(message.get("headers", ()))
                names = {name.lower() for name, _ in raw}
                raw.extend(h for h in SECURITY_HEADERS if h[0] not in names)
            await send(message)

        await self.app(scope, receive, with_headers)
