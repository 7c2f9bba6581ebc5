"""DeviceLinks' sweeper: one pass over all links ends the silent ones (4408) and those whose device stopped
reading (4008), and leaves the others alone."""

from __future__ import annotations

import time

from airdisplay.events import InProcessEventBus
from airdisplay.realtime import DeviceLinks, SubscriberState


def test_one_sweep_ends_silent_and_stalled_links_and_only_those():
    links = DeviceLinks(InProcessEventBus(), heartbeat_seconds=30.0, stall_seconds=0.0)
    silent, stalled, healthy = links.attach("b1"), links.attach("b2"), links.attach("b3")
    silent.last_heard = time.monotonic() - 31.0
    stalled.subscriber.control('{"type":"ping"}')  # queued, and with a stall limit of 0 it waits too long
    links.sweep_once()
    assert silent.timed_out and silent.subscriber.state is SubscriberState.CLOSED
    assert not stalled.timed_out and stalled.subscriber.state is SubscriberState.OVERFLOWED
    assert not healthy.timed_out and healthy.subscriber.state is SubscriberState.OPEN


async def test_the_sweeper_runs_between_start_and_stop():
    links = DeviceLinks(InProcessEventBus(), heartbeat_seconds=0.2, stall_seconds=10.0)
    link = links.attach("b1")
    links.start()
    try:
        assert await link.subscriber.ended() is SubscriberState.CLOSED  # the sweeper found it silent
        assert link.timed_out
    finally:
        await links.stop()
