"""The web UI: the page at `/` and its static assets, served locally so it works offline."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from ...web import DOCS_HTML, FAVICON_SVG, INDEX_HTML, VENDOR_DIR

router = APIRouter(include_in_schema=False)

#: User text must never become markup or script: only our own scripts run, no inline script, no eval.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


#: Swagger UI sets element styles from its script, so its page allows inline styles (never inline script).
DOCS_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
)


@router.get("/docs", response_class=HTMLResponse, response_model=None)
async def api_docs() -> FileResponse | HTMLResponse:
    """Swagger UI for the OpenAPI document, from assets installed by npm (no CDN, no inline script)."""
    if not (VENDOR_DIR / "swagger-ui-bundle.js").exists():
        return HTMLResponse("<h1>AirDisplay API</h1><p>Swagger UI is not installed.</p>", status_code=503)
    headers = {**PAGE_HEADERS, "Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY}
    return FileResponse(DOCS_HTML, media_type="text/html", headers=headers)


@router.get("/", response_class=HTMLResponse, response_model=None)
async def index() -> FileResponse | HTMLResponse:
    """The fleet page."""
    if not INDEX_HTML.exists() or not (VENDOR_DIR / "alpine-csp.min.js").exists():
        # Without Alpine the page would be blank: say so rather than serve it.
        return HTMLResponse(
            "<h1>AirDisplay</h1><p>The web UI is not installed (run <code>make install</code>).</p>",
            status_code=503,
        )
    return FileResponse(INDEX_HTML, media_type="text/html", headers=PAGE_HEADERS)


@router.get("/favicon.ico", response_model=None)
async def favicon() -> FileResponse:
    """The AirDisplay icon, for clients that ask for /favicon.ico without reading the page's link."""
    return FileResponse(
        FAVICON_SVG, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"}
    )
