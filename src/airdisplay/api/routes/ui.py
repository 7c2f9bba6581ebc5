"""The web UI: the page at `/` and its static assets, served locally so it works offline."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from ...web import INDEX_HTML

router = APIRouter(include_in_schema=False)

#: User text must never become markup or script: only our own scripts run, no inline script, no eval.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@router.get("/docs", response_class=HTMLResponse)
async def api_docs() -> HTMLResponse:
    """Swagger UI for the OpenAPI document, from assets installed by npm (no CDN)."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="AirDisplay API",
        swagger_js_url="/static/vendor/swagger-ui-bundle.js",
        swagger_css_url="/static/vendor/swagger-ui.css",
        swagger_favicon_url="data:,",
    )


@router.get("/", response_class=HTMLResponse, response_model=None)
async def index() -> FileResponse | HTMLResponse:
    """The fleet page."""
    if not INDEX_HTML.exists():
        return HTMLResponse("<h1>AirDisplay</h1><p>The web UI is not installed.</p>", status_code=503)
    return FileResponse(INDEX_HTML, media_type="text/html", headers=SECURITY_HEADERS)
