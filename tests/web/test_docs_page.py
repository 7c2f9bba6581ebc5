"""The API docs page in real Chromium: Swagger UI from local assets under a CSP without inline script."""

from __future__ import annotations

from playwright.async_api import expect

from tests.web.conftest import UI_TIMEOUT_MS


async def test_api_docs_render_under_the_content_security_policy(browser, web_server):
    page = await browser.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    requested: set[str] = set()
    page.on("request", lambda request: requested.add(request.url.split("/")[2]))
    try:
        response = await page.goto(web_server.url + "/docs")
        assert response is not None
        assert "script-src 'self'" in (await response.all_headers())["content-security-policy"]
        await expect(page.get_by_text("/api/v1/banners/{banner_id}/message").first).to_be_visible(
            timeout=UI_TIMEOUT_MS
        )
        assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors
        assert requested == {web_server.url.split("/")[2]}  # nothing but our own server
        await expect(page.locator('link[rel="icon"]')).to_have_attribute("href", "/static/favicon.svg")
    finally:
        await page.close()
