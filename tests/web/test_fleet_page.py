"""The fleet page in real Chromium against a real server: live updates, countdown, errors, safety, paging."""

from __future__ import annotations

import json
import re

import websockets
from playwright.async_api import expect

from tests.web.conftest import UI_TIMEOUT_MS, same_origin


async def test_a_message_sent_in_one_tab_shows_in_another_within_a_second(web_server, open_fleet):
    await web_server.create("n123ab", "Cessna N123AB")
    sender, watcher = await open_fleet(web_server.url), await open_fleet(web_server.url)
    await sender.wait_live()
    await watcher.wait_live()
    await expect(watcher.card("n123ab")).to_have_attribute("data-state", "free")

    await sender.submit("n123ab", "Marry me, Alex!")
    await expect(sender.message("n123ab")).to_have_text("Marry me, Alex!")
    await expect(watcher.message("n123ab")).to_have_text("Marry me, Alex!", timeout=1000)
    await expect(watcher.card("n123ab")).to_have_attribute("data-state", "showing")
    await expect(sender.card("n123ab").get_by_role("textbox", name="Message")).to_have_value("")


async def test_countdown_runs_down_and_the_message_goes_when_it_expires(start_web_server, open_fleet):
    server = await start_web_server(message_seconds=2)
    await server.create("b1", "Short messages")
    fleet = await open_fleet(server.url)
    await fleet.wait_live()
    # Record every value the countdown shows, in the page, so no tick can slip between two polls.
    await fleet.page.evaluate(
        """() => {
            window.seenSeconds = [];
            const el = document.querySelector('[data-banner-id="b1"] [data-testid="seconds"]');
            new MutationObserver(() => window.seenSeconds.push(el.dataset.seconds))
                .observe(el, {attributes: true, attributeFilter: ['data-seconds']});
        }"""
    )

    await fleet.submit("b1", "Two seconds of fame")
    await expect(fleet.card("b1")).to_have_attribute("data-state", "showing")
    await expect(fleet.card("b1")).to_have_attribute("data-state", "free", timeout=UI_TIMEOUT_MS)
    await expect(fleet.message("b1")).to_be_hidden()

    seen = [int(s) for s in await fleet.page.evaluate("window.seenSeconds")]
    shown = [s for s in seen if s > 0]
    assert shown and shown[0] == 2, seen
    assert 1 in shown, seen  # it counted down through 1
    assert shown == sorted(shown, reverse=True), f"the countdown went back up: {seen}"
    assert (await server.client.get("/api/v1/banners/b1")).json()["message"] is None


async def test_a_refused_submit_says_when_the_banner_frees_up(web_server, open_fleet):
    await web_server.create("b1", "Busy banner")
    fleet = await open_fleet(web_server.url)
    await fleet.wait_live()
    first = await web_server.client.post("/api/v1/banners/b1/message", json={"text": "Already up"})
    assert first.status_code == 201
    await expect(fleet.message("b1")).to_have_text("Already up")

    await fleet.submit("b1", "Me too")
    notice = fleet.notice("b1")
    await expect(notice).to_have_text(re.compile(r"^Banner busy — free in \d+ s \(at .+\)$"))
    seconds = int(re.search(r"free in (\d+) s", await notice.inner_text()).group(1))
    assert 50 <= seconds <= 60
    await expect(fleet.message("b1")).to_have_text("Already up")
    await expect(fleet.card("b1").get_by_role("textbox", name="Message")).to_have_value("Me too")


async def test_a_rejected_text_shows_the_servers_reason(start_web_server, open_fleet, tmp_path):
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("free beer\n")
    server = await start_web_server(blocklist=blocklist)
    await server.create("b1", "Strict banner")
    fleet = await open_fleet(server.url)
    await fleet.submit("b1", "Free beer at the beach")
    await expect(fleet.notice("b1")).to_contain_text("'free beer', which this fleet does not allow")
    await expect(fleet.card("b1")).to_have_attribute("data-state", "free")


async def test_the_message_box_counts_as_the_server_does_and_holds_back_an_over_long_text(
    web_server, open_fleet
):
    await web_server.create("b1", "Counted")
    fleet = await open_fleet(web_server.url)
    card = fleet.card("b1")
    box, count = card.get_by_role("textbox", name="Message"), card.get_by_test_id("count")
    send = card.get_by_role("button", name="Send")
    await expect(count).to_have_text("0/64")
    await box.fill("  Up, up and away 🎈  ")  # trimmed, and the balloon is one character, as in Python
    await expect(count).to_have_text("17/64")

    await box.fill("x" * 70)
    await expect(count).to_have_text("70/64")
    await expect(box).to_have_attribute("aria-invalid", "true")
    await expect(fleet.notice("b1")).to_have_text("6 characters too many: a banner shows at most 64.")
    await expect(send).to_be_disabled()
    await box.press("Enter")  # the form's other way to send is held back too

    await box.press("End")
    for _ in range(6):
        await box.press("Backspace")
    await expect(count).to_have_text("64/64")
    await expect(fleet.notice("b1")).to_be_hidden()
    await send.click()
    await expect(fleet.message("b1")).to_have_text("x" * 64)
    message_url = web_server.url + "/api/v1/banners/b1/message"
    assert fleet.requests.count(message_url) == 1, "the over-long text went to the server"
    await expect(count).to_have_text("0/64")


async def test_the_counter_follows_the_servers_configured_limit(start_web_server, open_fleet):
    server = await start_web_server(max_text_length=20)
    await server.create("b1", "Short strip")
    fleet = await open_fleet(server.url)
    card = fleet.card("b1")
    count = card.get_by_test_id("count")
    await expect(count).to_have_text("0/20")
    await card.get_by_role("textbox", name="Message").fill("x" * 21)
    await expect(fleet.notice("b1")).to_have_text("1 character too many: a banner shows at most 20.")


async def test_markup_in_a_message_is_shown_as_text_and_never_runs(web_server, open_fleet):
    await web_server.create("b1", "<b>bold</b> name")
    sender, watcher = await open_fleet(web_server.url), await open_fleet(web_server.url)
    await watcher.wait_live()
    attack = "<img src=x onerror=alert(1)>"

    await sender.submit("b1", attack)
    for fleet in (sender, watcher):
        await expect(fleet.message("b1")).to_have_text(attack)
        await expect(fleet.card("b1").locator(".card-name")).to_have_text("<b>bold</b> name")
        assert await fleet.page.locator("img").count() == 0
        assert await fleet.card("b1").locator("b").count() == 0
        assert fleet.dialogs == []
        assert not any(url.endswith("/x") for url in fleet.requests), fleet.requests


async def test_the_page_loads_and_works_with_no_host_but_the_server(web_server, open_fleet):
    await web_server.create("b1", "Local only")
    fleet = await open_fleet(web_server.url)
    await fleet.wait_live()
    await fleet.submit("b1", "Offline is fine")
    await expect(fleet.message("b1")).to_have_text("Offline is fine")

    assert any(url.endswith("/static/vendor/alpine-csp.min.js") for url in fleet.requests)
    foreign = [url for url in fleet.requests + fleet.sockets if not same_origin(fleet, url)]
    assert foreign == [], f"the page reached beyond the server: {foreign}"


async def test_the_page_has_its_own_icon_served_by_the_server(web_server, open_fleet):
    fleet = await open_fleet(web_server.url)
    icon = fleet.page.locator('link[rel="icon"]')
    await expect(icon).to_have_attribute("href", "/static/favicon.svg")
    size = await fleet.page.evaluate(
        """async () => {
            const image = new Image();
            image.src = document.querySelector('link[rel="icon"]').href;
            await image.decode();
            return [image.naturalWidth, image.naturalHeight];
        }"""
    )
    assert size[0] > 0 and size[0] == size[1], size  # a square image the browser can draw


async def test_pages_of_24_with_next_previous_and_search(web_server, open_fleet):
    for i in range(30):
        await web_server.create(f"b-{i:02d}", "Zeppelin NT" if i == 7 else f"Banner {i:02d}")
    fleet = await open_fleet(web_server.url)
    await fleet.wait_live()
    await expect(fleet.cards).to_have_count(24)
    await expect(fleet.cards.first).to_have_attribute("data-banner-id", "b-00")
    assert _last_set(fleet) == [f"b-{i:02d}" for i in range(24)]

    await fleet.page.get_by_test_id("next").click()
    await expect(fleet.cards).to_have_count(6)
    await expect(fleet.cards.first).to_have_attribute("data-banner-id", "b-24")
    await expect(fleet.page.get_by_test_id("next")).to_be_disabled()
    await fleet.wait_live()
    assert _last_set(fleet) == [f"b-{i:02d}" for i in range(24, 30)]

    await fleet.page.get_by_test_id("previous").click()
    await expect(fleet.cards).to_have_count(24)
    await expect(fleet.page.get_by_test_id("previous")).to_be_disabled()

    search = fleet.page.get_by_role("searchbox", name="Search banners")
    await search.fill("b-2")
    await expect(fleet.cards).to_have_count(10)
    await expect(fleet.cards.first).to_have_attribute("data-banner-id", "b-20")
    await search.fill("ZEP")
    await expect(fleet.cards).to_have_count(1)
    await expect(fleet.card("b-07")).to_be_visible()
    await fleet.wait_live()
    assert _last_set(fleet) == ["b-07"]
    assert all(len(frame["banners"]) <= 24 for frame in fleet.sent_frames if frame["type"] == "set")


async def test_a_bad_banner_id_is_explained_in_words_not_as_a_pattern(web_server, open_fleet):
    fleet = await open_fleet(web_server.url)
    await fleet.page.get_by_role("button", name="Operator").click()
    form = fleet.page.get_by_test_id("register-form")
    await form.get_by_placeholder("id, e.g. n123ab").fill("N123 AB")
    await form.get_by_role("button", name="Register").click()  # and no name either

    hint = form.locator(".hint-error")
    await expect(hint).to_have_text(
        "An id is 1 to 64 lowercase letters (a–z), digits and hyphens, and starts and ends with a letter or"
        " digit, e.g. n123ab. A banner needs a name of 1 to 100 characters."
    )
    await form.get_by_placeholder("id, e.g. n123ab").fill("n123ab")
    await form.get_by_role("textbox", name="Banner name").fill("Cessna N123AB")
    await form.get_by_role("button", name="Register").click()
    await expect(fleet.card("n123ab")).to_contain_text("Cessna N123AB")


async def test_register_a_banner_from_an_empty_fleet(web_server, open_fleet):
    fleet = await open_fleet(web_server.url)
    await expect(fleet.page.get_by_text("No banners yet")).to_be_visible()
    await fleet.page.get_by_role("button", name="Operator").click()
    form = fleet.page.get_by_test_id("register-form")
    await form.get_by_placeholder("id, e.g. n123ab").fill("n42")
    await form.get_by_role("textbox", name="Banner name").fill("Piper N42")
    await form.get_by_role("button", name="Register").click()
    await expect(fleet.card("n42")).to_contain_text("Piper N42")
    assert (await web_server.client.get("/api/v1/banners/n42")).status_code == 200


async def test_open_submitting_needs_no_key_and_registering_asks_for_the_operator_key_once(
    start_web_server, open_fleet
):
    server = await start_web_server(api_key="s3cret-key")
    await server.create("b1", "Guarded")
    fleet = await open_fleet(server.url)
    await fleet.submit("b1", "Anyone may say hi")  # submitting is open by default: no prompt
    await expect(fleet.message("b1")).to_have_text("Anyone may say hi")
    key_form = fleet.page.get_by_test_id("key-form")
    await expect(key_form).to_be_hidden()

    await fleet.page.get_by_role("button", name="Operator").click()
    form = fleet.page.get_by_test_id("register-form")
    await form.get_by_placeholder("id, e.g. n123ab").fill("n42")
    await form.get_by_role("textbox", name="Banner name").fill("Piper N42")
    await form.get_by_role("button", name="Register").click()
    await expect(form).to_contain_text("operator key")
    await key_form.get_by_label("API key").fill("s3cret-key")
    await key_form.get_by_role("button", name="Save key").click()
    await form.get_by_role("button", name="Register").click()
    await expect(fleet.card("n42")).to_contain_text("Piper N42")
    assert await fleet.page.evaluate("localStorage.getItem('airdisplay.apiKey')") == "s3cret-key"


async def test_a_server_that_needs_a_key_to_submit_asks_for_it_once_and_then_it_is_sent(
    start_web_server, open_fleet
):
    server = await start_web_server(api_key="s3cret-key", submit_access="key")
    await server.create("b1", "Guarded")
    fleet = await open_fleet(server.url)
    await fleet.submit("b1", "Let me in")
    await expect(fleet.notice("b1")).to_contain_text("API key needed to send messages")
    key_form = fleet.page.get_by_test_id("key-form")
    await expect(key_form).to_be_visible()
    await key_form.get_by_label("API key").fill("s3cret-key")
    await key_form.get_by_role("button", name="Save key").click()

    await fleet.card("b1").get_by_role("button", name="Send").click()
    await expect(fleet.message("b1")).to_have_text("Let me in")
    assert await fleet.page.evaluate("localStorage.getItem('airdisplay.apiKey')") == "s3cret-key"
    await fleet.page.reload()
    await expect(fleet.message("b1")).to_have_text("Let me in")


async def test_after_a_server_restart_the_page_reconnects_and_catches_up(
    start_web_server, open_fleet, tmp_path
):
    first = await start_web_server(message_seconds=60)
    await first.create("b1", "Survivor")
    fleet = await open_fleet(first.url)
    fleet.tolerated.append("WebSocket connection to")  # refused while the server is down
    await fleet.wait_live()
    port = int(first.url.rsplit(":", 1)[1])

    await first.stop()
    await expect(fleet.link).to_have_text("Reconnecting…")
    await expect(fleet.card("b1")).to_have_attribute("data-state", "free")  # the last known state stays

    second = await start_web_server(port=port, data_dir=tmp_path, message_seconds=60)
    shown = await second.client.post("/api/v1/banners/b1/message", json={"text": "Back again"})
    assert shown.status_code == 201
    await expect(fleet.message("b1")).to_have_text("Back again", timeout=UI_TIMEOUT_MS + 5000)
    await expect(fleet.link).to_have_text("Live")
    resumed = [frame for frame in fleet.sent_frames if frame["type"] == "set"][-1]
    assert resumed["known"] == {"b1": 1}


def _last_set(fleet) -> list[str]:
    frames = [frame for frame in fleet.sent_frames if frame["type"] == "set"]
    assert frames, "the page never subscribed"
    return frames[-1]["banners"]


async def test_a_deleted_banner_shows_as_removed_and_comes_back_when_registered_again(web_server, open_fleet):
    await web_server.create("b1", "Old life")
    fleet = await open_fleet(web_server.url)
    await fleet.wait_live()
    shown = await web_server.client.post("/api/v1/banners/b1/message", json={"text": "first life"})
    await expect(fleet.card("b1")).to_have_attribute("data-version", str(shown.json()["version"]))
    assert (await web_server.client.delete("/api/v1/banners/b1")).status_code == 204
    await expect(fleet.card("b1")).to_have_attribute("data-state", "gone")
    await expect(fleet.card("b1").get_by_role("button", name="Send")).to_be_disabled()

    await web_server.create("b1", "New life")  # versions start again at 1
    await expect(fleet.card("b1")).to_have_attribute("data-state", "free")
    await expect(fleet.card("b1").locator(".card-name")).to_have_text("New life")


async def test_each_card_tells_whether_the_physical_banner_shows_the_message(web_server, open_fleet):
    token = (await web_server.create("b1", "With a device")).json()["device_token"]
    fleet = await open_fleet(web_server.url)
    await fleet.wait_live()
    device_state = fleet.card("b1").get_by_test_id("device")
    await expect(device_state).to_have_text("device offline")

    url = web_server.url.replace("http://", "ws://") + "/api/v1/devices/b1/connect"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as device:
        blank = json.loads(await device.recv())
        await expect(device_state).to_have_text("sending…")  # online, but it has not acknowledged yet
        await device.send(json.dumps({"type": "ack", "version": blank["version"]}))
        await expect(device_state).to_have_text("device online")  # the banner is free: it shows nothing

        await fleet.submit("b1", "Up in the sky")
        display = json.loads(await device.recv())
        assert display["text"] == "Up in the sky"
        await expect(device_state).to_have_text("sending…")
        await device.send(json.dumps({"type": "ack", "version": display["version"]}))
        await expect(device_state).to_have_text("showing on banner")

        assert (await web_server.client.delete("/api/v1/banners/b1/message")).status_code == 200
        cleared = json.loads(await device.recv())
        await expect(fleet.card("b1").get_by_test_id("strip")).to_contain_text("free")
        await expect(device_state).to_have_text("sending…")
        await device.send(json.dumps({"type": "ack", "version": cleared["version"]}))
        await expect(device_state).to_have_text("device online")
    await expect(device_state).to_have_text("device offline")


async def test_a_refused_submit_books_the_next_slot_and_follows_its_place_in_line(
    start_web_server, open_fleet
):
    server = await start_web_server(message_seconds=4)
    await server.create("b1", "Busy banner")
    booker, watcher = await open_fleet(server.url), await open_fleet(server.url)
    await booker.wait_live()
    await watcher.wait_live()
    assert (
        await server.client.post("/api/v1/banners/b1/message", json={"text": "Already up"})
    ).status_code == 201
    await expect(booker.message("b1")).to_have_text("Already up")

    await booker.submit("b1", "<b>Next</b> please")
    card = booker.card("b1")
    await card.get_by_test_id("book").click()
    await expect(card.get_by_test_id("mine")).to_have_text(re.compile(r"^Your message is number 1 in line"))
    await expect(card.get_by_test_id("queue")).to_have_text(re.compile(r"^1 waiting, next at "))
    await expect(watcher.card("b1").get_by_test_id("queue")).to_have_text(re.compile(r"^1 waiting"))
    # Its slot comes: the booked text shows, as text, and the queue line goes.
    await expect(card.get_by_test_id("mine")).to_have_text(
        "Your message is showing now.", timeout=UI_TIMEOUT_MS
    )
    await expect(watcher.message("b1")).to_have_text("<b>Next</b> please")
    await expect(watcher.card("b1").get_by_test_id("queue")).to_be_hidden()


async def test_a_booking_made_on_the_page_can_be_cancelled_there(web_server, open_fleet):
    await web_server.create("b1", "Busy banner")
    fleet = await open_fleet(web_server.url)
    await fleet.wait_live()
    assert (
        await web_server.client.post("/api/v1/banners/b1/message", json={"text": "Up"})
    ).status_code == 201
    await expect(fleet.message("b1")).to_have_text("Up")
    await fleet.submit("b1", "Later")
    card = fleet.card("b1")
    await card.get_by_test_id("book").click()
    await expect(card.get_by_test_id("mine")).to_have_text(re.compile(r"^Your message is number 1"))
    await card.get_by_test_id("cancel-booking").click()
    await expect(card.get_by_test_id("mine")).to_be_hidden()
    await expect(card.get_by_test_id("queue")).to_be_hidden()
    assert (await web_server.client.get("/api/v1/banners/b1/bookings")).json()["items"] == []


async def test_a_card_opens_what_its_banner_showed_and_its_queue(web_server, open_fleet):
    await web_server.create("b1", "Busy banner")
    fleet = await open_fleet(web_server.url)
    await fleet.wait_live()
    for text in ["<i>first</i>", "second"]:
        assert (
            await web_server.client.post("/api/v1/banners/b1/message", json={"text": text})
        ).status_code == 201
        if text != "second":
            assert (await web_server.client.delete("/api/v1/banners/b1/message")).status_code == 200
    booked = await web_server.client.post("/api/v1/banners/b1/bookings", json={"text": "third"})
    assert booked.status_code == 202
    card = fleet.card("b1")
    await card.get_by_test_id("history-toggle").click()
    entries = card.get_by_test_id("history-entry")
    await expect(entries).to_have_count(2)
    await expect(entries.nth(0)).to_contain_text("second")
    await expect(entries.nth(0)).to_contain_text("showing now")
    await expect(entries.nth(1)).to_contain_text("<i>first</i>")  # as text, never markup
    await expect(entries.nth(1)).to_contain_text("cleared early")
    await expect(card.get_by_test_id("queue-list")).to_contain_text("1. at ")
