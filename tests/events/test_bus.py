"""The in-process event bus (events/_bus.py): every subscriber gets every change in the order it was
published, in the publishing turn; one failing subscriber stops no other; unsubscribing is immediate."""

from __future__ import annotations

import logging

from airdisplay.domain import BannerChanged, ChangeKind
from airdisplay.events import InProcessEventBus, Published
from tests.events.conftest import NOW, deleted, showing, shown


def change(banner_id: str, version: int) -> BannerChanged:
    return BannerChanged(ChangeKind.MESSAGE_CLEARED, banner_id, version, None, NOW)


def test_every_subscriber_gets_every_change_in_publish_order_within_the_publishing_call():
    bus = InProcessEventBus()
    first: list[tuple[str, int]] = []
    second: list[tuple[str, int]] = []
    bus.subscribe(lambda event: first.append((event.banner_id, event.version)))
    bus.subscribe(lambda event: second.append((event.banner_id, event.version)))
    order = [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)]
    for banner_id, version in order:
        bus.publish(change(banner_id, version))
        assert first[-1] == second[-1] == (banner_id, version)  # delivered before publish returned
    assert first == second == order


def test_all_subscribers_share_one_published_event_and_its_frame():
    bus = InProcessEventBus()
    got: list[Published] = []
    bus.subscribe(got.append)
    bus.subscribe(got.append)
    banner = showing()
    bus.publish(shown(banner))
    one, other = got
    assert one is other and one.change == shown(banner)
    assert one.frame is other.frame


def test_a_failing_subscriber_is_logged_and_the_others_still_get_the_change(caplog):
    bus = InProcessEventBus()
    seen: list[tuple[str, int]] = []

    def broken(event: Published) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(lambda event: seen.append(("before", event.version)))
    bus.subscribe(broken)
    bus.subscribe(lambda event: seen.append(("after", event.version)))
    with caplog.at_level(logging.ERROR, logger="airdisplay.events"):
        bus.publish(change("b-1", 7))
        bus.publish(change("b-1", 8))
    assert seen == [("before", 7), ("after", 7), ("before", 8), ("after", 8)]
    failures = [r for r in caplog.records if r.name == "airdisplay.events"]
    assert [r.getMessage() for r in failures] == [f"event handler failed for b-1 v{v}" for v in (7, 8)]
    assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in failures)


def test_an_unsubscribed_handler_gets_nothing_more_and_the_others_are_unaffected():
    bus = InProcessEventBus()
    kept: list[int] = []
    dropped: list[int] = []
    bus.subscribe(lambda event: kept.append(event.version))
    unsubscribe = bus.subscribe(lambda event: dropped.append(event.version))
    bus.publish(change("b-1", 1))
    unsubscribe()
    bus.publish(change("b-1", 2))
    assert kept == [1, 2] and dropped == [1]


def test_a_handler_that_unsubscribes_while_a_change_is_delivered_leaves_that_delivery_whole():
    """Delivery walks a copy of the subscribers, so removing one in a handler skips no other."""
    bus = InProcessEventBus()
    got: list[tuple[str, int]] = []
    unsubscribe_first = None

    def first(event: Published) -> None:
        got.append(("first", event.version))
        assert unsubscribe_first is not None
        unsubscribe_first()

    unsubscribe_first = bus.subscribe(first)
    bus.subscribe(lambda event: got.append(("second", event.version)))
    bus.publish(change("b-1", 1))
    bus.publish(deleted("b-1", 2))
    assert got == [("first", 1), ("second", 1), ("second", 2)]


def test_a_change_that_arrives_from_the_transport_reaches_the_subscribers():
    bus = InProcessEventBus()
    got: list[Published] = []
    bus.subscribe(got.append)
    bus.deliver(change("b-1", 4))
    assert [event.change for event in got] == [change("b-1", 4)]
