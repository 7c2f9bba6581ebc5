"""The embedded actor runtime against a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import pytest

from airdisplay.actors import (
    ActivationFailed,
    Actor,
    ActorHost,
    RuntimeClosed,
    SqliteStore,
    UnknownActorMethod,
    UnknownActorType,
)
from tests.conftest import FakeClock, eventually


class Counter(Actor):
    """A test actor whose read-modify-write would lose updates if two turns ever overlapped."""

    activations = 0
    deactivations = 0
    fired: list[tuple[str, str, float]] = []
    fail_reminders = 0
    #: While set to an unset event, reminder turns wait for it (counted in `held`): turns still firing.
    hold: asyncio.Event | None = None
    held = 0

    async def on_activate(self) -> None:
        type(self).activations += 1
        await asyncio.sleep(0.01)  # a slow activation widens any race between first calls

    async def on_deactivate(self) -> None:
        type(self).deactivations += 1

    async def increment(self, by: int = 1) -> int:
        found, value = await self._state_manager.try_get_state("n")
        await asyncio.sleep(0)  # let every other caller run in between read and write
        new = (value if found else 0) + by
        await self._state_manager.set_state("n", new)
        self.publish(("n", new))
        return new

    async def read(self) -> int | None:
        found, value = await self._state_manager.try_get_state("n")
        return value if found else None

    async def break_after_writing(self) -> None:
        await self._state_manager.set_state("n", 999)
        await self.register_reminder("never", b"", timedelta(seconds=0))
        self.publish(("n", 999))
        raise RuntimeError("boom")

    async def mutate_in_place_then_fail(self) -> None:
        items = await self._state_manager.get_state("items")
        items.append("partial")
        raise RuntimeError("boom")

    async def set_items(self, items: list[str]) -> None:
        await self._state_manager.set_state("items", items)

    async def get_items(self) -> list[str]:
        return list(await self._state_manager.get_state("items"))

    async def block(self, started: asyncio.Event, release: asyncio.Event) -> None:
        started.set()
        await release.wait()

    async def remind(self, name: str, seconds: float, period: float | None = None) -> None:
        await self._state_manager.set_state("has-reminder", True)
        await self.register_reminder(
            name,
            name.encode(),
            timedelta(seconds=seconds),
            None if period is None else timedelta(seconds=period),
        )

    async def forget(self, name: str) -> None:
        await self.unregister_reminder(name)

    async def _private(self) -> None:
        """Not callable from outside: private."""

    async def receive_reminder(self, name, state, due_time, period) -> None:
        if type(self).hold is not None:
            type(self).held += 1
            await type(self).hold.wait()
        if type(self).fail_reminders > 0:
            type(self).fail_reminders -= 1
            raise RuntimeError("handler failure")
        type(self).fired.append((self.id, name, time.time()))


@pytest.fixture(autouse=True)
def reset_counter():
    Counter.activations = Counter.deactivations = Counter.fail_reminders = Counter.held = 0
    Counter.fired = []
    Counter.hold = None


def make_host(path: Path, **kw) -> tuple[ActorHost, list[object]]:
    events: list[object] = []
    host = ActorHost(
        SqliteStore(path / "actors.db"),
        event_sink=lambda t, i, evs: events.extend((i, e) for e in evs),
        **kw,
    )
    host.register_actor_type("counter", Counter)
    return host, events


@pytest.fixture
async def host(tmp_path):
    host, _ = make_host(tmp_path)
    await host.start()
    yield host
    await host.stop()


def stored_rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path / "actors.db") as conn:
        return conn.execute(sql).fetchall()


async def test_thousand_concurrent_calls_to_one_actor_are_serialised(host):
    results = await asyncio.gather(*(host.call("counter", "c1", Counter.increment) for _ in range(1000)))
    assert sorted(results) == list(range(1, 1001))  # every turn saw the previous one: no lost update
    assert await host.call("counter", "c1", Counter.read) == 1000


async def test_calls_to_different_actors_overlap(host):
    started, release = asyncio.Event(), asyncio.Event()
    blocked = asyncio.create_task(host.call("counter", "slow", Counter.block, started, release))
    await started.wait()
    assert await host.call("counter", "other", Counter.increment) == 1  # not stuck behind "slow"
    assert not blocked.done()
    release.set()
    await blocked


async def test_a_blocked_turn_holds_back_only_its_own_actor(host):
    started, release = asyncio.Event(), asyncio.Event()
    blocked = asyncio.create_task(host.call("counter", "c1", Counter.block, started, release))
    await started.wait()
    queued = asyncio.create_task(host.call("counter", "c1", Counter.increment))
    await host.call("counter", "c2", Counter.increment)
    assert not queued.done()
    release.set()
    assert await queued == 1
    await blocked


async def test_concurrent_first_calls_activate_once(host):
    await asyncio.gather(*(host.call("counter", "fresh", Counter.increment) for _ in range(50)))
    assert Counter.activations == 1
    assert host.active_count == 1


async def test_reply_comes_after_the_write_is_durable(host, tmp_path):
    await host.call("counter", "c1", Counter.increment, 41)
    assert stored_rows(tmp_path, "SELECT value FROM actor_state WHERE actor_id='c1'") == [(b"41",)]


async def test_failing_turn_leaves_no_partial_state(host, tmp_path):
    await host.call("counter", "c1", Counter.increment, 5)
    events_before = Counter.fired[:]
    with pytest.raises(RuntimeError, match="boom"):
        await host.call("counter", "c1", Counter.break_after_writing)
    assert await host.call("counter", "c1", Counter.read) == 5
    assert stored_rows(tmp_path, "SELECT value FROM actor_state WHERE actor_id='c1'") == [(b"5",)]
    assert stored_rows(tmp_path, "SELECT name FROM reminders") == []  # the failed turn's reminder is gone too
    assert Counter.fired == events_before


async def test_mutating_a_read_value_then_failing_does_not_corrupt_state(host):
    await host.call("counter", "c1", Counter.set_items, ["a"])
    with pytest.raises(RuntimeError):
        await host.call("counter", "c1", Counter.mutate_in_place_then_fail)
    assert await host.call("counter", "c1", Counter.get_items) == ["a"]


async def test_events_reach_the_sink_after_commit_in_turn_order(tmp_path):
    host, events = make_host(tmp_path)
    await host.start()
    try:
        await asyncio.gather(*(host.call("counter", "c1", Counter.increment) for _ in range(100)))
        with pytest.raises(RuntimeError):
            await host.call("counter", "c1", Counter.break_after_writing)
    finally:
        await host.stop()
    assert events == [("c1", ("n", i)) for i in range(1, 101)]


async def test_idle_actors_leave_memory_and_come_back_with_their_state(tmp_path):
    host, _ = make_host(tmp_path, idle_timeout=0.05)
    await host.start()
    try:
        for i in range(20):
            await host.call("counter", f"c{i}", Counter.increment, i)
        await eventually(lambda: host.active_count == 0, what="idle actors to be deactivated")
        assert Counter.deactivations == 20
        assert await host.call("counter", "c7", Counter.read) == 7
        assert Counter.activations == 21
    finally:
        await host.stop()


async def test_a_large_idle_sweep_lets_other_tasks_run_between_chunks(tmp_path):
    """2,000 idle actors leave memory in chunks: a task spinning on the loop sees the count fall in steps."""
    # 2 s: longer than activating 2,000 actors takes on a slow machine: none leaves before all are in.
    host, _ = make_host(tmp_path, idle_timeout=2.0)
    await host.start()
    try:
        await asyncio.gather(*(host.call("counter", f"c{i}", Counter.increment) for i in range(2000)))
        seen: list[int] = []
        while host.active_count:
            seen.append(host.active_count)
            await asyncio.sleep(0)
        assert max(seen) == 2000
        steps = sorted(set(seen) - {2000})
        assert len(steps) >= 3, f"the sweep did not yield between chunks: saw {steps}"
        assert Counter.deactivations == 2000
    finally:
        await host.stop()


async def test_actor_without_state_is_not_kept_in_memory(host):
    assert await host.call("counter", "ghost", Counter.read) is None
    await eventually(lambda: host.active_count == 0, what="stateless actor to be dropped")


class Stranger(Actor):
    """An actor class that is not registered: its methods are not the counter's."""

    async def read(self) -> int | None:
        return 0


async def test_unknown_actor_types_and_methods_the_class_does_not_expose_are_refused(host):
    with pytest.raises(UnknownActorType):
        await host.call("nope", "x", Counter.read)
    for method in (Counter.on_activate, Counter._private, Stranger.read):
        with pytest.raises(UnknownActorMethod):
            await host.call("counter", "x", method)
    assert host.active_count == 0  # refused before any activation


async def test_calls_after_stop_are_refused(tmp_path):
    host, _ = make_host(tmp_path)
    await host.start()
    await host.stop()
    with pytest.raises(RuntimeClosed):
        await host.call("counter", "c1", Counter.read)


async def test_failed_activation_fails_the_call_and_the_next_call_retries(host, monkeypatch):
    original = Counter.on_activate

    async def broken(self):
        raise OSError("disk went away")

    monkeypatch.setattr(Counter, "on_activate", broken)
    with pytest.raises(ActivationFailed, match="disk went away"):
        await host.call("counter", "c1", Counter.read)
    monkeypatch.setattr(Counter, "on_activate", original)
    assert await host.call("counter", "c1", Counter.increment) == 1


async def test_one_shot_reminder_fires_at_its_due_time_and_is_removed(host, tmp_path):
    registered = time.time()
    await host.call("counter", "c1", Counter.remind, "once", 0.2)
    await eventually(lambda: len(Counter.fired) == 1, what="the reminder to fire")
    actor_id, name, fired_at = Counter.fired[0]
    assert (actor_id, name) == ("c1", "once")
    assert fired_at >= registered + 0.2  # never early
    await eventually(lambda: host.reminders_in_memory == 0, what="the scheduler to forget it")
    assert stored_rows(tmp_path, "SELECT name FROM reminders") == []


async def test_periodic_reminder_repeats_until_unregistered(host, tmp_path):
    await host.call("counter", "c1", Counter.remind, "tick", 0.01, 0.02)
    await eventually(lambda: len(Counter.fired) >= 3, what="three ticks")
    await host.call("counter", "c1", Counter.forget, "tick")
    assert stored_rows(tmp_path, "SELECT name FROM reminders") == []
    await eventually(lambda: host.reminders_in_memory == 0, what="the tick to leave the scheduler")


async def test_reregistering_a_reminder_replaces_it(host, tmp_path):
    await host.call("counter", "c1", Counter.remind, "r", 3600)
    await host.call("counter", "c1", Counter.remind, "r", 0.05)
    await eventually(lambda: len(Counter.fired) == 1, what="the replacement to fire")
    await eventually(lambda: not stored_rows(tmp_path, "SELECT name FROM reminders"), what="the row to go")
    # the replaced one-hour registration is not waiting anywhere either
    await eventually(lambda: host.reminders_in_memory == 0, what="the scheduler to be empty")


async def test_failing_reminder_handler_is_retried(host):
    Counter.fail_reminders = 1
    await host.call("counter", "c1", Counter.remind, "retry-me", 0.01)
    await eventually(lambda: len(Counter.fired) == 1, what="the retried reminder")
    assert Counter.fail_reminders == 0


async def test_overdue_reminders_fire_after_a_restart(tmp_path):
    now = [1_000_000.0]
    host, _ = make_host(tmp_path, clock=lambda: now[0])
    await host.start()
    await host.call("counter", "c1", Counter.remind, "late", 30)
    await host.call("counter", "c2", Counter.remind, "later", 60)
    await host.stop()
    assert len(stored_rows(tmp_path, "SELECT name FROM reminders")) == 2

    now[0] += 3600  # the host was down for an hour
    host, _ = make_host(tmp_path, clock=lambda: now[0])
    await host.start()
    try:
        await eventually(lambda: len(Counter.fired) == 2, what="both overdue reminders")
        assert {(a, n) for a, n, _ in Counter.fired} == {("c1", "late"), ("c2", "later")}
        await eventually(lambda: not stored_rows(tmp_path, "SELECT name FROM reminders"), what="rows removed")
    finally:
        await host.stop()


async def test_scheduler_pages_reminders_instead_of_loading_all(tmp_path):
    host, _ = make_host(tmp_path, reminder_page_size=10)
    await host.start()
    try:
        await asyncio.gather(
            *(host.call("counter", f"c{i}", Counter.remind, "r", 0.2 + i / 500) for i in range(200))
        )
        assert host.reminders_in_memory <= 20  # two pages at most, not 200
        peak = 0

        def all_fired() -> bool:
            nonlocal peak
            peak = max(peak, host.reminders_in_memory)
            return len(Counter.fired) == 200

        await eventually(all_fired, what="all 200 reminders")
        assert peak <= 20
        fired_order = [int(a[1:]) for a, _, _ in Counter.fired]
        assert len(set(fired_order)) == 200  # each exactly once
    finally:
        await host.stop()


async def test_reminders_still_firing_count_against_the_page(tmp_path):
    """Turns that have not finished yet hold their reminders in memory: the next page waits for them, or
    memory would grow with the in-flight limit (1,000) instead of the page size (it did, on a slow CI)."""
    host, _ = make_host(tmp_path, reminder_page_size=10)
    Counter.hold = asyncio.Event()
    await host.start()
    try:
        await asyncio.gather(*(host.call("counter", f"c{i}", Counter.remind, "r", 0) for i in range(100)))
        await eventually(lambda: Counter.held >= 10, what="a page of reminder turns started")
        assert host.reminders_in_memory <= 15  # under half a page in memory is what asks for the next
        Counter.hold.set()
        await eventually(lambda: len(Counter.fired) == 100, what="all 100 reminders, page after page")
        assert len({a for a, _, _ in Counter.fired}) == 100
        await eventually(lambda: host.reminders_in_memory == 0, what="memory empty again")
    finally:
        Counter.hold.set()
        await host.stop()


async def test_an_overdue_backlog_of_many_pages_all_fires_after_a_restart(tmp_path):
    """30 reminders overdue at a restart, read 10 a page: each page fires at once, fewer than the in-flight
    limit, and the scheduler then reads the next page instead of waiting for something to wake it (it
    waited for good after the first page before)."""
    clock = FakeClock(1_000_000.0)
    first, _ = make_host(tmp_path, clock=clock)
    await first.start()
    await asyncio.gather(*(first.call("counter", f"c{i:02d}", Counter.remind, "r", 60) for i in range(30)))
    await first.stop()
    clock.now += 3600
    host, _ = make_host(tmp_path, clock=clock, reminder_page_size=10)
    await host.start()
    try:
        await eventually(lambda: len(Counter.fired) == 30, what="all 30 overdue reminders")
        assert sorted(a for a, _, _ in Counter.fired) == [f"c{i:02d}" for i in range(30)]
    finally:
        await host.stop()


async def test_a_pinned_actor_stays_in_memory_while_idle_and_leaves_once_unpinned(tmp_path):
    host, _ = make_host(tmp_path, idle_timeout=0.05)
    await host.start()
    try:
        await host.call("counter", "kept", Counter.increment)
        await host.call("counter", "marker", Counter.increment)
        host.pin("counter", "kept")
        # The marker leaving memory shows that sweeps past the idle timeout ran.
        await eventually(lambda: host.active_count == 1, what="the unpinned actor to be deactivated")
        for _ in range(3):  # and again, after the pinned one was passed over and moved to the end
            await host.call("counter", "marker", Counter.increment)
            await eventually(lambda: host.active_count == 1, what="the unpinned actor to leave again")
        activations = host.activations
        assert await host.call("counter", "kept", Counter.read) == 1
        assert host.activations == activations  # still in memory: no activation
        host.unpin("counter", "kept")
        await eventually(lambda: host.active_count == 0, what="the unpinned actor to be deactivated")
        assert host.pinned_count == 0
    finally:
        await host.stop()


async def test_the_scheduler_reads_a_page_a_part_at_a_time_and_lets_the_loop_run_in_between(tmp_path):
    """A page read in one go held the event loop for tens of milliseconds under an expiry wave; now each
    read is READ_ROWS at most (in one go, so no change notification falls inside one), and other tasks run
    between two reads."""
    from airdisplay.actors._scheduler import READ_ROWS

    host, _ = make_host(tmp_path)
    await host.start()
    await asyncio.gather(
        *(host.call("counter", f"c{i}", Counter.remind, "r", 3600) for i in range(int(2.2 * READ_ROWS)))
    )
    await host.stop()

    host, _ = make_host(tmp_path)
    ticks = 0
    reads: list[tuple[int, int]] = []  # (limit, ticks when read)
    page_reminders = host.store.page_reminders

    def spied(after, limit):
        reads.append((limit, ticks))
        return page_reminders(after, limit)

    host.store.page_reminders = spied  # type: ignore[method-assign]

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await host.start()
    try:
        await eventually(lambda: len(reads) >= 3, what="the page read in three parts")
        assert [limit for limit, _ in reads[:3]] == [READ_ROWS] * 3
        assert reads[0][1] < reads[1][1] < reads[2][1]  # the loop ran between them
        assert host.reminders_in_memory == int(2.2 * READ_ROWS)
    finally:
        ticker.cancel()
        await host.stop()
