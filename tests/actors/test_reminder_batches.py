"""Reminders handled in batches (ReminderBatching) against a real SQLite file: turns, failures, restarts."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path

import pytest

from airdisplay.actors import (
    Actor,
    ActorHost,
    ReminderBatching,
    ReminderEffect,
    ReminderRecord,
    SqliteStore,
)
from airdisplay.actors._batching import HANDLE_SLICE
from airdisplay.actors._scheduler import PAGE_SIZE, RETRY_MAX_DELAY
from tests.conftest import FakeClock, eventually

OFF = "off"
#: A reminder name the tests' host makes urgent (fired ahead of others that are due).
ALARM = "alarm"


class Lamp(Actor):
    """A lamp that a one-shot reminder switches off, only if it is still lit for that reason (idempotent)."""

    turned_off_in_turns = 0

    async def light(self, reason: str, seconds: float) -> None:
        await self._state_manager.set_state("lit", reason)
        await self.register_reminder(OFF, reason.encode(), timedelta(seconds=seconds))
        self.publish(("lit", self.id, reason))

    async def light_urgently(self, reason: str, seconds: float) -> None:
        """As `light`, but with an urgent reminder to switch off."""
        await self._state_manager.set_state("lit", reason)
        await self.register_reminder(ALARM, reason.encode(), timedelta(seconds=seconds))

    async def lit(self) -> str | None:
        found, reason = await self._state_manager.try_get_state("lit")
        return reason if found else None

    async def relight(self, reason: str) -> str | None:
        """Read what is lit, give the loop away, then light again: a lost update if turns overlapped."""
        before = await self.lit()
        await asyncio.sleep(0)
        await self._state_manager.set_state("lit", reason)
        self.publish(("lit", self.id, reason))
        return before

    async def hold(self, started: asyncio.Event, release: asyncio.Event) -> None:
        started.set()
        await release.wait()

    async def receive_reminder(self, name, state, due_time, period) -> None:
        type(self).turned_off_in_turns += 1
        if await self.lit() == state.decode():
            await self._state_manager.set_state("lit", None)
            self.publish(("off", self.id, state.decode()))


class Batches:
    """The batch handler of Lamp, counting what it handled; it can be told to fail for one lamp."""

    def __init__(self) -> None:
        self.handled: list[str] = []
        self.fail_for: set[str] = set()
        #: Called before each reminder is handled (a test's probe).
        self.before: Callable[[], None] | None = None

    def handle(
        self, record: ReminderRecord, stored: Mapping[str, bytes], now: float
    ) -> ReminderEffect | None:
        if self.before is not None:
            self.before()
        if record.actor_id in self.fail_for:
            raise RuntimeError(f"handler failure for {record.actor_id}")
        self.handled.append(record.actor_id)
        reason = record.data.decode()
        raw = stored.get("lit")
        if raw is None or json.loads(raw) != reason:
            return None
        return ReminderEffect(state_set=(("lit", b"null"),), events=(("off", record.actor_id, reason),))


@pytest.fixture(autouse=True)
def reset_lamp():
    Lamp.turned_off_in_turns = 0


class Setup:
    """A host with Lamp actors and batching, its events, and spies on the store's batch reads and writes."""

    def __init__(self, path: Path, **kw) -> None:
        self.path = path
        self.events: list[tuple[str, str, str]] = []
        self.batches = Batches()
        self.host = ActorHost(
            SqliteStore(path / "actors.db"),
            event_sink=lambda t, i, evs: self.events.extend(evs),
            **kw,
        )
        self.host.register_actor_type(
            "lamp",
            Lamp,
            batching=ReminderBatching(frozenset({OFF}), ("lit",), self.batches.handle),
            urgent=(ALARM,),
        )
        self.written: list[int] = []  # sizes of the reminder batches written
        self.write_errors: list[BaseException] = []
        store = self.host.store
        write_batch = store.write_batch

        def spy(batch):
            future = write_batch(batch)
            self.written.append(len(batch))
            future.add_done_callback(
                lambda f: self.write_errors.append(f.exception()) if f.exception() is not None else None
            )
            return future

        store.write_batch = spy  # type: ignore[method-assign]

    def rows(self, sql: str) -> list[tuple]:
        with sqlite3.connect(self.path / "actors.db") as conn:
            return conn.execute(sql).fetchall()

    def offs(self) -> list[str]:
        return [lamp for kind, lamp, _ in self.events if kind == "off"]


@pytest.fixture
async def setup(tmp_path):
    s = Setup(tmp_path)
    await s.host.start()
    yield s
    await s.host.stop()


async def overdue_after_restart(tmp_path: Path, lamps: int, clock: FakeClock | None = None) -> Setup:
    """`lamps` lamps lit with reminders due in 30 s, then a host started an hour later (all overdue)."""
    clock = clock or FakeClock(1_000_000.0)
    first = Setup(tmp_path, clock=clock)
    await first.host.start()
    await asyncio.gather(
        *(first.host.call("lamp", f"l{i:03d}", Lamp.light, "party", 30) for i in range(lamps))
    )
    await first.host.stop()
    clock.now += 3600
    return Setup(tmp_path, clock=clock)


async def test_overdue_reminders_fire_in_batches_after_a_restart(tmp_path):
    s = await overdue_after_restart(tmp_path, 300)
    await s.host.start()
    try:
        await eventually(lambda: len(s.offs()) == 300, what="all 300 lamps off")
        assert sorted(s.offs()) == [f"l{i:03d}" for i in range(300)]  # each exactly once
        assert Lamp.turned_off_in_turns == 0  # no turn, no activation: all in batches
        assert len(s.written) < 30 and sum(s.written) == 300  # batches, not one write per reminder
        assert s.rows("SELECT count(*) FROM reminders") == [(0,)]
        assert s.rows("SELECT DISTINCT value FROM actor_state") == [(b"null",)]
        await eventually(lambda: s.host.active_count == 0, what="placeholders to go")
        assert await s.host.call("lamp", "l007", Lamp.lit) is None  # activation reads the batch's state
    finally:
        await s.host.stop()


async def test_a_batch_lets_the_loop_run_between_slices_of_its_reminders(tmp_path):
    """200 overdue reminders in one batch: a callback that comes due as the batch starts handling them runs
    after the first HANDLE_SLICE, not after all 200 (an urgent turn does not wait a whole batch)."""
    s = await overdue_after_restart(tmp_path, 200)
    seen: list[int] = []

    def probe() -> None:
        if not s.batches.handled:
            asyncio.get_running_loop().call_soon(lambda: seen.append(len(s.batches.handled)))

    s.batches.before = probe
    await s.host.start()
    try:
        await eventually(lambda: len(s.offs()) == 200, what="all 200 lamps off")
        assert s.written == [200]  # one batch
        assert seen == [HANDLE_SLICE]
    finally:
        await s.host.stop()


async def test_a_batch_cancelled_between_slices_lets_go_of_its_actors(tmp_path):
    """The batch's task is cancelled while it handles its reminders (as at a stop): it writes nothing and
    holds none of its actors, so calls to them go on."""
    s = await overdue_after_restart(tmp_path, 200)

    def cancel_at_the_tenth() -> None:
        if len(s.batches.handled) == 10:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()

    s.batches.before = cancel_at_the_tenth
    await s.host.start()
    try:
        await eventually(lambda: len(s.batches.handled) >= HANDLE_SLICE, what="the batch to start")
        for lamp in ("l005", "l100", "l199"):  # handled before the cancel, and not reached
            assert await asyncio.wait_for(s.host.call("lamp", lamp, Lamp.lit), 5) == "party"
        assert s.written == [] and s.offs() == []
    finally:
        await s.host.stop()


async def urgent_after_a_wave(tmp_path: Path, page_size: int, within: int) -> None:
    """2,000 ordinary reminders and 5 urgent ones, all overdue at a restart, the urgent ones due last, read
    `page_size` a page: the urgent ones are among the first `within` fired, and each reminder fires once."""
    clock = FakeClock(1_000_000.0)
    first = Setup(tmp_path, clock=clock)
    await first.host.start()
    await asyncio.gather(
        *(first.host.call("lamp", f"l{i:04d}", Lamp.light, "party", 30) for i in range(2000))
    )
    await asyncio.gather(
        *(first.host.call("lamp", f"u{i}", Lamp.light_urgently, "alarm", 31) for i in range(5))
    )
    await first.host.stop()
    clock.now += 3600
    s = Setup(tmp_path, clock=clock, reminder_page_size=page_size)
    await s.host.start()
    try:
        await eventually(lambda: len(s.offs()) == 2005, what="all 2,005 lamps off")
        offs = s.offs()
        assert sorted(offs) == sorted([f"l{i:04d}" for i in range(2000)] + [f"u{i}" for i in range(5)])
        urgent_at = [offs.index(f"u{i}") for i in range(5)]
        assert max(urgent_at) < within, f"urgent reminders fired at positions {urgent_at} of 2,005"
        assert s.rows("SELECT count(*) FROM reminders") == [(0,)]
        indexes = s.rows("SELECT name FROM sqlite_master WHERE name LIKE 'reminders_urgent_%'")
        assert len(indexes) == 1, indexes
    finally:
        await s.host.stop()


async def test_urgent_reminders_fire_ahead_of_a_wave_due_before_them(tmp_path):
    """All in one page: in due order they would fire after all 2,000."""
    await urgent_after_a_wave(tmp_path, PAGE_SIZE, within=1000)


async def test_urgent_reminders_do_not_wait_for_a_paged_backlog_to_reach_them(tmp_path):
    """Pages of 100, in due order: the urgent ones are found by their own index, not on page 21."""
    await urgent_after_a_wave(tmp_path, 100, within=500)


async def test_actors_do_not_stay_in_memory_after_a_wave(tmp_path):
    s = Setup(tmp_path, idle_timeout=3600)  # idle deactivation would take an hour
    await s.host.start()
    try:
        await asyncio.gather(*(s.host.call("lamp", f"l{i}", Lamp.light, "x", 0.2) for i in range(100)))
        assert s.host.active_count == 100
        await eventually(lambda: len(s.offs()) == 100, what="the wave of reminders")
        assert Lamp.turned_off_in_turns == 0  # the lamps were in memory but idle: batched too
        await eventually(lambda: s.host.active_count == 0, what="the lamps to leave memory")
        assert await s.host.call("lamp", "l5", Lamp.lit) is None
    finally:
        await s.host.stop()


async def test_call_during_a_batch_waits_for_it_and_sees_its_result(tmp_path):
    """The batch's read is held back by the test, so a call arrives while the batch holds the actor."""
    s = await overdue_after_restart(tmp_path, 3)
    store = s.host.store
    read_actors = store.read_actors
    reading, go_on = asyncio.Event(), asyncio.Event()

    async def slow_read(*args, **kwargs):
        reading.set()
        await go_on.wait()
        return await read_actors(*args, **kwargs)

    store.read_actors = slow_read  # type: ignore[method-assign]
    await s.host.start()
    try:
        await reading.wait()
        call = asyncio.create_task(s.host.call("lamp", "l001", Lamp.relight, "later"))
        await s.host.call("lamp", "other", Lamp.light, "x", 3600)  # other actors are not held up
        await asyncio.sleep(0.05)  # the blocked call has every chance to overtake the batch (it must not)
        assert not call.done()
        go_on.set()
        assert await call is None  # it ran after the batch switched the lamp off
        assert s.events.index(("off", "l001", "party")) < s.events.index(("lit", "l001", "later"))
        assert await s.host.call("lamp", "l001", Lamp.lit) == "later"
        assert Lamp.turned_off_in_turns == 0
    finally:
        await s.host.stop()


async def test_call_to_a_resident_actor_during_its_batch_write_waits(setup):
    """The batch write of an actor in memory is held back; a call to it queues until it is durable."""
    s = setup
    store = s.host.store
    spy = store.write_batch
    writing, go_on = asyncio.Event(), asyncio.Event()

    def slow_write(batch):
        future = spy(batch)
        writing.set()

        async def later():
            await go_on.wait()
            return await future

        return asyncio.ensure_future(later())

    store.write_batch = slow_write  # type: ignore[method-assign]
    await s.host.call("lamp", "l1", Lamp.light, "party", 0.05)
    await writing.wait()
    call = asyncio.create_task(s.host.call("lamp", "l1", Lamp.relight, "later"))
    await asyncio.sleep(0.05)
    assert not call.done()
    go_on.set()
    assert await call is None
    assert [e for e in s.events if e[1] == "l1"] == [
        ("lit", "l1", "party"),
        ("off", "l1", "party"),
        ("lit", "l1", "later"),
    ]
    assert s.host.active_count == 1  # it had a caller waiting: it stays, with the batch's state
    assert await s.host.call("lamp", "l1", Lamp.lit) == "later"


async def test_busy_actor_gets_its_reminder_in_a_turn_of_its_own(setup):
    s = setup
    started, release = asyncio.Event(), asyncio.Event()
    await s.host.call("lamp", "l1", Lamp.light, "party", 0.05)
    busy = asyncio.create_task(s.host.call("lamp", "l1", Lamp.hold, started, release))
    await started.wait()
    activation = s.host._active[("lamp", "l1")]
    await eventually(lambda: activation.waiting == 1, what="the due reminder to queue behind the turn")
    assert s.offs() == []
    release.set()
    await busy
    await eventually(lambda: s.offs() == ["l1"], what="the reminder's turn")
    assert Lamp.turned_off_in_turns == 1 and s.batches.handled == []
    assert s.rows("SELECT count(*) FROM reminders") == [(0,)]


async def test_failing_batch_write_is_retried_and_never_half_applied(tmp_path):
    clock = FakeClock(1_000_000.0)
    s = await overdue_after_restart(tmp_path, 20, clock)
    with sqlite3.connect(tmp_path / "actors.db") as conn:
        conn.executescript(
            """
            CREATE TABLE fail (n INTEGER);
            INSERT INTO fail VALUES (1);
            CREATE TRIGGER fail_l013 BEFORE INSERT ON actor_state
            WHEN NEW.actor_id = 'l013' AND (SELECT count(*) FROM fail) > 0
            BEGIN SELECT RAISE(ABORT, 'injected failure'); END;
            """
        )
    await s.host.start()
    try:
        await eventually(lambda: s.write_errors, what="the batch write to fail")
        # Nothing of the failed batch is stored or published: reminders and state as before.
        assert s.offs() == []
        assert s.rows("SELECT count(*) FROM reminders") == [(20,)]
        assert s.rows("SELECT DISTINCT value FROM actor_state") == [(b'"party"',)]
        assert await s.host.call("lamp", "l003", Lamp.lit) == "party"  # its actor went back to normal
        with sqlite3.connect(tmp_path / "actors.db") as conn:
            conn.execute("DELETE FROM fail")
        assert s.offs() == []  # no retry before its backoff ...
        clock.now += RETRY_MAX_DELAY  # ... which runs on the host's clock
        await eventually(lambda: len(s.offs()) == 20, what="the retry (after a backoff)")
        assert sorted(s.offs()) == [f"l{i:03d}" for i in range(20)]  # exactly once each
        assert s.rows("SELECT count(*) FROM reminders") == [(0,)]
    finally:
        await s.host.stop()


async def test_handler_failure_retries_only_that_reminder(tmp_path):
    clock = FakeClock(1_000_000.0)
    s = await overdue_after_restart(tmp_path, 10, clock)
    s.batches.fail_for = {"l004"}
    await s.host.start()
    try:
        await eventually(lambda: len(s.offs()) == 9, what="the other nine")
        assert "l004" not in s.offs()
        assert s.rows("SELECT actor_id FROM reminders") == [("l004",)]
        s.batches.fail_for = set()
        clock.now += RETRY_MAX_DELAY
        await eventually(lambda: len(s.offs()) == 10, what="the retried one")
    finally:
        await s.host.stop()


async def test_replaced_reminder_is_not_fired_by_a_batch(setup):
    s = setup
    await s.host.call("lamp", "l1", Lamp.light, "old", 0.1)
    await s.host.call("lamp", "l1", Lamp.light, "new", 0.3)  # replaces the reminder
    started = time.monotonic()
    await eventually(lambda: s.offs() == ["l1"], what="the new reminder")
    assert time.monotonic() - started >= 0.15
    assert [e for e in s.events if e[0] == "off"] == [("off", "l1", "new")]
    assert s.batches.handled == ["l1"]  # the old registration never reached the handler
