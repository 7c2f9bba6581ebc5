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


async def test_a_control_frame_of_a_kind_replaces_the_queued_one():
    """A flood of `subscribed` replies queues one: only the newest list says anything."""
    sub = Subscriber(limit=10)
    sub.control("error 1")
    for count in range(1000):
        sub.control(f"subscribed {count}", kind="subscribed")
    sub.control("ping 1", kind="ping")
    sub.control("ping 2", kind="ping")
    sub.control("error 2")
    assert [i.frame for i in await sub.take()] == ["error 1", "subscribed 999", "ping 2", "error 2"]
    assert sub.pending_bytes == 0


async def test_queued_bytes_are_bounded_for_control_frames_too():
    sub = Subscriber(limit=10, max_bytes=1000)
    sub.offer("a", 1, "a" * 400)
    sub.control("c" * 400)
    assert sub.pending_bytes == 800 and sub.state is SubscriberState.OPEN
    sub.control("d" * 300)
    assert sub.state is SubscriberState.OVERFLOWED and sub.pending_bytes == 0
    with pytest.raises(SubscriberOverflow):
        await sub.take()


async def test_frames_over_the_byte_bound_coalesce_before_they_overflow():
    sub = Subscriber(limit=100, max_bytes=1000)
    for version in range(1, 10):
        sub.offer("a", version, str(version) * 300)  # 2,700 bytes offered, 300 of them the newest state
    assert sub.state is SubscriberState.OPEN and sub.pending_bytes <= 1000 and sub.coalesced > 0
    assert frames(await sub.take())[-1] == ("a", 9)
    sub.offer("a", 10, "a" * 300)
    sub.offer("b", 1, "b" * 400)
    sub.offer("c", 1, "c" * 400)  # three distinct banners, 1,100 bytes even coalesced
    assert sub.state is SubscriberState.OVERFLOWED


async def test_take_hands_out_a_bounded_batch_and_keeps_the_rest_in_order():
    sub = Subscriber(limit=100)
    for banner in "abcdef":
        sub.offer(banner, 1, banner * 40)
    sub.control("x" * 500, kind="subscribed")
    first = await sub.take(max_bytes=100)
    assert [i.frame[0] for i in first] == ["x"]  # one frame even when it alone is over the batch
    assert [i.banner_id for i in await sub.take(max_bytes=100)] == ["a", "b", "c"]
    assert sub.stalled_for() > 0  # frames still wait
    assert [i.banner_id for i in await sub.take(max_bytes=100)] == ["d", "e", "f"]
    assert sub.pending_bytes == 0 and sub.stalled_for() == 0


async def test_coalescing_a_subscriber_behind_on_many_banners_is_not_repeated_at_every_frame():
    sub = Subscriber(limit=4)
    for banner in range(10):
        sub.offer(f"b{banner}", 1, "x")  # coalesced once at 5 frames: 5 distinct kept, next at 10
    assert sub.coalesced == 1 and sub.pending == 10
    sub.offer("b0", 2, "x")  # the 11th frame: coalesced again, b0's older frame dropped
    assert sub.coalesced == 2 and sub.pending == 10
