"""The fleet page's layout in real Chromium on a laptop and a phone: nothing cut off, panels open in view."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.web.conftest import LAPTOP, PHONE

SCREENS = [pytest.param(LAPTOP, id="laptop"), pytest.param(PHONE, id="phone")]

#: The longest text of each LED size (app.js: LED_MEDIUM, LED_SMALL, and the server's 64 characters).
MESSAGES = {
    "big": "Marry me, Alex!!!!",
    "medium": "Happy birthday Sam, from all of us",
    "small": "Welcome home Lieutenant-Commander Maximilian Oppenheimer-Wolff!!",
}

_MEASURE = """() => {
    const width = window.innerWidth;
    const describe = (el) => el.tagName.toLowerCase() + (el.className ? '.' + String(el.className).trim()
        .split(/\\s+/).join('.') : '') + (el.dataset.testid ? '[' + el.dataset.testid + ']' : '');
    const sticking = [...document.querySelectorAll('body *')]
        .filter((el) => el.getBoundingClientRect().right > width + 0.5).map(describe);
    const clipped = [...document.querySelectorAll('[data-testid="message"]')]
        .filter((el) => el.offsetParent !== null)
        .filter((el) => {
            const strip = el.parentElement.getBoundingClientRect();
            const box = el.getBoundingClientRect();
            return el.scrollWidth > el.clientWidth || box.left < strip.left || box.right > strip.right
                || box.top < strip.top || box.bottom > strip.bottom;
        })
        .map((el) => el.textContent);
    const scrollWidth = document.documentElement.scrollWidth;
    return {scrollWidth, width, sticking: sticking.slice(0, 8), clipped};
}"""


async def _assert_fits(page: Page, state: str) -> None:
    """The page is no wider than the window, and every message on a strip shows whole."""
    measured = await page.evaluate(_MEASURE)
    assert measured["scrollWidth"] <= measured["width"], (
        f"{state}: the page is wider than the window: {measured}"
    )
    assert measured["clipped"] == [], f"{state}: a message is cut off on its strip: {measured}"


@pytest.mark.parametrize("screen", SCREENS)
async def test_nothing_sticks_out_of_the_window_in_any_state_of_the_page(
    screen, web_server, open_fleet, tmp_path
):
    await web_server.create("b-free", "A free banner with a rather long name for a small phone")
    for size in MESSAGES:
        await web_server.create(f"b-{size}", f"Banner showing a {size} text")
    fleet = await open_fleet(web_server.url, viewport=screen)
    await fleet.wait_live()
    await _assert_fits(fleet.page, "no message")

    for size, text in MESSAGES.items():
        await fleet.submit(f"b-{size}", text)
        await expect(fleet.message(f"b-{size}")).to_have_text(text)
    await _assert_fits(fleet.page, "messages showing")

    await fleet.submit("b-big", "Me too")
    await expect(fleet.notice("b-big")).to_contain_text("Banner busy")
    await fleet.card("b-free").get_by_role("textbox", name="Message").fill("y" * 70)
    await expect(fleet.notice("b-free")).to_be_visible()
    await _assert_fits(fleet.page, "notices on cards")

    await fleet.page.get_by_role("button", name="Operator").click()
    form = fleet.page.get_by_test_id("register-form")
    await expect(form).to_be_visible()
    await _assert_fits(fleet.page, "operator panel open")
    await form.get_by_placeholder("id, e.g. n123ab").fill("Not A Valid Id, Surely Not!")
    await form.get_by_role("textbox", name="Banner name").fill("Anything")
    await form.get_by_role("button", name="Register").click()
    await expect(form.locator(".hint-error")).to_be_visible()
    await _assert_fits(fleet.page, "registering refused")

    fleet.tolerated.append("WebSocket connection to")  # refused while the server is down
    await web_server.stop()
    await fleet.page.get_by_role("searchbox", name="Search banners").fill("b-")
    await expect(fleet.page.locator(".fleet-error")).to_contain_text("Cannot reach the server")
    await _assert_fits(fleet.page, "server unreachable")


@pytest.mark.parametrize("screen", SCREENS)
async def test_the_operator_panel_opens_in_view_when_the_page_is_scrolled_down(
    screen, web_server, open_fleet
):
    for i in range(24):
        await web_server.create(f"b-{i:02d}", f"Banner {i:02d}")
    fleet = await open_fleet(web_server.url, viewport=screen)
    await expect(fleet.cards).to_have_count(24)
    await fleet.card("b-23").scroll_into_view_if_needed()
    assert await fleet.page.evaluate("window.scrollY") > screen["height"]

    await fleet.page.get_by_role("button", name="Operator").click()
    await expect(fleet.page.get_by_test_id("register-form")).to_be_in_viewport(ratio=1)
    await expect(fleet.page.get_by_test_id("key-form")).to_be_in_viewport(ratio=1)
    await expect(fleet.card("b-23")).to_be_in_viewport()  # where the operator was stays where it was


async def test_a_card_far_down_that_needs_a_key_shows_the_key_form_in_view(start_web_server, open_fleet):
    server = await start_web_server(api_key="s3cret-key", submit_access="key")
    for i in range(24):
        await server.create(f"b-{i:02d}", f"Banner {i:02d}")
    fleet = await open_fleet(server.url, viewport=PHONE)
    await fleet.submit("b-23", "Let me in")
    await expect(fleet.notice("b-23")).to_contain_text("API key needed")
    key_form = fleet.page.get_by_test_id("key-form")
    await expect(key_form).to_be_in_viewport(ratio=1)

    await key_form.get_by_label("API key").fill("s3cret-key")
    await key_form.get_by_role("button", name="Save key").click()
    await fleet.card("b-23").get_by_role("button", name="Send").click()
    await expect(fleet.message("b-23")).to_have_text("Let me in")
