"""A subscriber's outbox: ordered, never regressing, coalescing when behind, bounded."""

from __future__ import annotations

import asyncio

import pytest

from airdisplay.realtime import Subscriber, SubscriberOverflow, SubscriberState


def frames(items):
    return [(i.banner_id, i.version) for i in items]


async def test_frames_come_out_in_order_with_control_frames_first():
    sub = Subscriber(limit=10)
    sub.offer("a", 1, "a1")
    sub.offer("a", 2, "a2")
    sub.control("ping")
    assert frames(await sub.take()) == [(None, 0), ("a", 1), ("a", 2)]


async def test_older_or_known_versions_are_dropped():
    sub = Subscriber(limit=10)
    sub.knows("a", 5)
    assert not sub.offer("a", 5, "a5") and not sub.offer("a", 3, "a3")
    assert sub.offer("a", 6, "a6")
    assert not sub.offer("a", 6, "a6 again")
    assert frames(await sub.take()) == [("a", 6)]


async def test_created_event_restarts_versions_of_a_recreated_banner():
    sub = Subscriber(limit=10)
    sub.offer("a", 9, "deleted at 9")
    assert sub.offer("a", 1, "created again", resets=True)
    assert frames(await sub.take()) == [("a", 9), ("a", 1)]


async def test_falling_behind_coalesces_to_the_newest_state_per_banner():
    sub = Subscriber(limit=4)
    for version in range(1, 6):
        sub.offer("a", version, f"a{version}")
    sub.offer("b", 1, "b1")
    taken = await sub.take()
    assert frames(taken) == [("a", 5), ("b", 1)]
    assert [i.frame for i in taken] == ["a5", "b1"]
    assert sub.coalesced == 1 and sub.state is SubscriberState.OPEN


async def test_too_many_distinct_banners_behind_overflows():
    sub = Subscriber(limit=2, max_pending=3)
    for banner in "abcd":
        sub.offer(banner, 1, banner)
    assert sub.state is SubscriberState.OVERFLOWED
    assert await asyncio.wait_for(sub.ended(), 1) is SubscriberState.OVERFLOWED
    with pytest.raises(SubscriberOverflow):
        await sub.take()
    assert not sub.offer("e", 1, "e")


async def test_stall_time_counts_only_while_frames_wait():
    sub = Subscriber(limit=10)
    assert sub.stalled_for() == 0
    sub.offer("a", 1, "a1")
    assert sub.stalled_for() > 0
    await sub.take()
    assert sub.stalled_for() == 0


async def test_forget_drops_queued_frames_of_an_unsubscribed_banner():
    sub = Subscriber(limit=10)
    sub.offer("a", 1, "a1")
    sub.offer("b", 1, "b1")
    sub.forget("a")
    assert frames(await sub.take()) == [("b", 1)]
    assert sub.offer("a", 1, "a1 again")  # versions are tracked afresh after a new subscribe
