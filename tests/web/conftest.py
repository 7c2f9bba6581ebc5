"""Real Chromium (Debian's) driven by Playwright against a real uvicorn server on a free loopback port."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Dialog, Locator, Page, WebSocket, async_playwright

from airdisplay.web import VENDOR_DIR
from tests.conftest import RunningServer, skip_for_missing

#: Playwright's own browser download cannot work on this network; Debian's Chromium (on PATH) is the browser.
CHROMIUM = shutil.which("chromium")
#: The background-networking flags stop Chromium calling home, which this closed network refuses noisily.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ALPINE = VENDOR_DIR / "alpine-csp.min.js"
#: Browser-side waits; generous for a loaded 2-core CI machine.
UI_TIMEOUT_MS = 10_000
#: The screens of issue 13: a laptop, and a phone (iPhone 12-15 size, in CSS pixels).
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def start_web_server(start_server) -> Callable[..., Awaitable[RunningServer]]:
    """`start_server` (tests/conftest.py) with a test client that sends the operator key the page asks for."""

    async def start(**settings: Any) -> RunningServer:
        return await start_server(client_sends_key=True, **settings)

    return start


@pytest.fixture
async def web_server(start_web_server) -> RunningServer:
    return await start_web_server(message_seconds=60)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        skip_for_missing("no Chromium: install Debian's package (apt-get install chromium); .ci/run does")
    if not ALPINE.exists():
        pytest.fail(f"{ALPINE} is missing: run `make install` (it copies Alpine.js from node_modules)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class FleetPage:
    """The fleet page in one browser tab, with what it asked the network for and what went wrong in it."""

    page: Page
    base_url: str
    requests: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)
    sent_frames: list[Any] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Console errors a test provokes on purpose (e.g. a WebSocket refused while the server restarts).
    tolerated: list[str] = field(default_factory=list)

    def unexpected_errors(self) -> list[str]:
        return [error for error in self.errors if not any(t in error for t in self.tolerated)]

    def card(self, banner_id: str) -> Locator:
        return self.page.locator(f'article.card[data-banner-id="{banner_id}"]')

    @property
    def cards(self) -> Locator:
        return self.page.locator("article.card")

    def message(self, banner_id: str) -> Locator:
        return self.card(banner_id).get_by_test_id("message")

    def notice(self, banner_id: str) -> Locator:
        return self.card(banner_id).get_by_test_id("notice")

    @property
    def link(self) -> Locator:
        return self.page.get_by_test_id("link")

    @property
    def fleet(self) -> Locator:
        return self.page.locator("main.fleet")

    async def wait_live(self) -> None:
        """Until the stream has confirmed a subscription to exactly the cards on screen."""
        await self.page.locator('main.fleet[data-synced="true"]').wait_for()

    async def submit(self, banner_id: str, text: str) -> None:
        card = self.card(banner_id)
        await card.get_by_role("textbox", name="Message").fill(text)
        await card.get_by_role("button", name="Send").click()


@pytest.fixture
async def open_fleet(browser) -> AsyncIterator[Callable[[str], Awaitable[FleetPage]]]:
    """Open the fleet page in a fresh browser context; at the end, fail on any page error it logged."""
    opened: list[FleetPage] = []

    async def open_page(base_url: str, viewport: dict[str, int] | None = None) -> FleetPage:
        context = await browser.new_context(viewport=viewport or {"width": 1400, "height": 1000})
        page = await context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        fleet = FleetPage(page, base_url)
        page.on("request", lambda request: fleet.requests.append(request.url))
        page.on("websocket", lambda ws: _watch_socket(fleet, ws))
        page.on("console", lambda message: _record_console(fleet, message))
        page.on("pageerror", lambda error: fleet.errors.append(f"pageerror: {error}"))

        async def dismiss(dialog: Dialog) -> None:
            fleet.dialogs.append(dialog.message)
            await dialog.dismiss()

        page.on("dialog", dismiss)
        await page.goto(base_url + "/")
        await page.get_by_test_id("page").filter(has_not_text="Loading").wait_for()
        opened.append(fleet)
        return fleet

    yield open_page
    problems = [error for fleet in opened for error in fleet.unexpected_errors()]
    for fleet in opened:
        await fleet.page.context.close()
    assert not problems, f"the page logged errors: {problems}"


def _watch_socket(fleet: FleetPage, ws: WebSocket) -> None:
    fleet.sockets.append(ws.url)
    ws.on("framesent", lambda payload: fleet.sent_frames.append(json.loads(payload)))


#: Chromium logs every non-2xx fetch as a console error; those answers (409, 422, 401) are part of the tests.
_EXPECTED_CONSOLE = ("Failed to load resource",)


def _record_console(fleet: FleetPage, message: ConsoleMessage) -> None:
    text = message.text
    if message.type == "error" and not text.startswith(_EXPECTED_CONSOLE):
        fleet.errors.append(f"console error: {text}")
    elif message.type == "warning" and text.startswith(("Alpine", "[Vue warn]")):
        fleet.errors.append(f"console warning: {text}")


def same_origin(fleet: FleetPage, url: str) -> bool:
    return url.startswith((fleet.base_url + "/", fleet.base_url.replace("http://", "ws://") + "/"))
