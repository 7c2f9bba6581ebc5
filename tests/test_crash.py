"""`airdisplay serve` killed with SIGKILL under concurrent load, again and again: nothing acknowledged lost.

A real server process (the venv's console script) runs on a free loopback port with 2-second messages.
BANNERS banners are registered; two submitters per banner race for each free slot, every submit with an
Idempotency-Key that is kept for retries when the answer is lost; a WebSocket subscriber follows all
banners and reconnects with its known versions (docs/realtime.md). Each time ACKS_BEFORE_KILL[i] more
submits are acknowledged (201), the server is killed with SIGKILL (no shutdown at all) while other
submits are in flight, and started again on the same data dir; after LONG_DOWNTIME_CYCLES it stays down
until every acknowledged message is overdue. After each restart: overdue expiries fire within
RESTART_GRACE, and each banner's last acknowledged message is still showing (same id, text, version) or
correctly expired (answered at or after its expires_at, the banner one version on, free or showing a
later message). At the end (load stopped, every expiry fired): `check_final_state` (no banner shows a
message; every acknowledged message expired; no two overlap on a banner; versions in order), the
subscriber caught up with the final versions and never saw one go backwards, and the server's log after
a graceful SIGTERM holds no traceback.

Here: 5 kill cycles, 6 server starts, ~100-120 distinct acknowledged messages checked, ~20 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import websockets

from tests.conftest import eventually, free_port
from tests.run_through import check_run_through

BANNERS = 20
SUBMITTERS_PER_BANNER = 2
MESSAGE_SECONDS = 2
#: New acknowledged submits that trigger each kill; varied so kills land at different points of the load.
ACKS_BEFORE_KILL = (8, 20, 12, 25, 10)
#: Kill cycles after which the server stays down until every acknowledged message is past its expiry, so
#: the restarted server starts with overdue expiries to fire.
LONG_DOWNTIME_CYCLES = (1, 3)
#: Acknowledged submits wanted after the last restart, to show the service works after it.
ACKS_AFTER_LAST_RESTART = 15
#: How long after a restart an overdue expiry may still show. The scheduler fires overdue reminders first
#: thing; 10 s is generous for a loaded 2-core machine.
RESTART_GRACE = 10.0
#: A message this far past its expiry counts as overdue; normal reminder latency is milliseconds.
EXPIRY_SLACK = timedelta(seconds=0.5)
#: Upper bound for any condition this test waits on (server start, acknowledgements, convergence).
WAIT = 30.0
#: A submitter waits this long for the banner to change before racing for it again anyway.
RACE_AGAIN_AFTER = MESSAGE_SECONDS + 1.0
AIRDISPLAY = Path(sys.executable).with_name("airdisplay")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Ack:
    """A 201 answer to a submit: the message as the server acknowledged it."""

    banner_id: str
    key: str
    text: str
    message_id: str
    shown_at: datetime
    expires_at: datetime
    version: int
    replayed: bool

    @classmethod
    def of(cls, banner_id: str, key: str, text: str, response: httpx.Response) -> Ack:
        body = response.json()
        message = body["message"]
        assert message["text"] == text, body  # a replay too: the same key always carries the same text
        return cls(
            banner_id,
            key,
            text,
            message["id"],
            datetime.fromisoformat(message["shown_at"]),
            datetime.fromisoformat(message["expires_at"]),
            body["version"],
            response.headers.get("Idempotent-Replayed") == "true",
        )


class Server:
    """The `airdisplay serve` process: started, killed with SIGKILL, started again on the same data dir."""

    def __init__(self, tmp_path: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.extra_args = extra_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = tmp_path / "data"
        self.logs = tmp_path
        self.starts = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.up = asyncio.Event()  # set while the server answers; clients wait on it after a failure

    async def start(self) -> None:
        self.starts += 1
        with (self.logs / f"server-{self.starts}.log").open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *[str(AIRDISPLAY), "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
                *["--message-seconds", str(MESSAGE_SECONDS)],
                # All submitters share one address here; the per-client limit is tested in tests/api.
                *["--submit-rate", "0"],
                *self.extra_args,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:

            async def ready() -> bool:
                assert self.proc is not None and self.proc.returncode is None, self.log()
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, limit=WAIT, what="the server to be ready")
        self.up.set()

    async def kill(self) -> None:
        assert self.proc is not None
        self.up.clear()
        self.proc.send_signal(signal.SIGKILL)
        async with asyncio.timeout(10):
            assert await self.proc.wait() == -signal.SIGKILL

    async def stop(self) -> None:
        """SIGTERM, as an operator would; kill if it does not go."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.up.clear()
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise

    def log(self) -> str:
        return (self.logs / f"server-{self.starts}.log").read_text(errors="replace")


@dataclass
class Subscriber:
    """Follows every banner over the WebSocket stream, across restarts, and remembers what it saw."""

    server: Server
    banner_ids: list[str]
    versions: dict[str, int] = field(default_factory=dict)
    backwards: list[str] = field(default_factory=list)
    frames: int = 0
    connections: int = 0
    _changed: dict[str, asyncio.Event] = field(default_factory=lambda: defaultdict(asyncio.Event))

    async def follow(self) -> None:
        while True:
            await self.server.up.wait()
            try:
                async with websockets.connect(self.server.url.replace("http", "ws") + "/api/v1/stream") as ws:
                    self.connections += 1
                    subscribe = {"type": "subscribe", "banners": self.banner_ids, "known": self.versions}
                    await ws.send(json.dumps(subscribe))
                    async for raw in ws:
                        self._receive(json.loads(raw))
            except (OSError, websockets.ConnectionClosed, websockets.InvalidHandshake):
                # Killed under us: wait for the restart (`up`), then resume with the known versions. The
                # controller clears `up` before it kills, so this backoff only guards against a tight loop.
                await asyncio.sleep(0.05)

    def _receive(self, frame: dict) -> None:
        if frame["type"] != "banner":
            return
        self.frames += 1
        banner_id, version = frame["banner_id"], frame["version"]
        known = self.versions.get(banner_id, 0)
        if version < known:
            self.backwards.append(f"{banner_id}: {frame['kind']} v{version} after v{known}")
            return
        self.versions[banner_id] = version
        self._changed.pop(banner_id, asyncio.Event()).set()

    async def changed_after(self, banner_id: str, version: int, limit: float) -> None:
        """Return once the subscriber saw `banner_id` past `version`, or after `limit` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                while self.versions.get(banner_id, 0) <= version:
                    await self._changed[banner_id].wait()


@dataclass
class Load:
    """Submitters racing for each banner; they keep an Idempotency-Key until they get an answer."""

    server: Server
    client: httpx.AsyncClient
    subscriber: Subscriber
    acks: list[Ack] = field(default_factory=list)
    refused_busy: int = 0
    lost_answers: int = 0  # transport errors and 5xx: the answer was lost, the same key is sent again
    stopping: bool = False

    async def submit_forever(self, banner_id: str, worker: int) -> None:
        sent = 0
        while not self.stopping:
            sent += 1
            key, text = uuid.uuid4().hex, f"{banner_id} w{worker} #{sent}"
            while not self.stopping:  # until this key gets an answer
                await self.server.up.wait()
                seen = self.subscriber.versions.get(banner_id, 0)
                try:
                    response = await self.client.post(
                        f"/api/v1/banners/{banner_id}/message",
                        json={"text": text},
                        headers={"Idempotency-Key": key},
                    )
                except httpx.TransportError:
                    self.lost_answers += 1  # killed mid-request: it may or may not have landed; ask again
                    continue
                if response.status_code >= 500:
                    self.lost_answers += 1
                    continue
                break
            else:
                return
            if response.status_code == 201:
                ack = Ack.of(banner_id, key, text, response)
                self.acks.append(ack)
                seen = max(seen, ack.version)
            else:
                assert response.status_code == 409, response.text
                self.refused_busy += 1
            # Race again once the banner changed (its message expired), as a waiting client would.
            await self.subscriber.changed_after(banner_id, seen, RACE_AGAIN_AFTER)


async def listing(client: httpx.AsyncClient) -> tuple[dict[str, dict], datetime, datetime]:
    """Every banner by id, with the wall-clock times just before and just after the server answered."""
    before = utcnow()
    response = await client.get("/api/v1/banners", params={"limit": 500})
    after = utcnow()
    assert response.status_code == 200, response.text
    return {b["id"]: b for b in response.json()["items"]}, before, after


def latest_acks(acks: list[Ack]) -> dict[str, Ack]:
    latest: dict[str, Ack] = {}
    for ack in acks:
        if ack.banner_id not in latest or ack.version > latest[ack.banner_id].version:
            latest[ack.banner_id] = ack
    return latest


def check_acknowledged_message(ack: Ack, banner: dict, answered: datetime) -> str:
    """Each acknowledged message is still showing, or gone after its expiry; returns which."""
    message = banner["message"]
    if message is not None and message["id"] == ack.message_id:
        assert message["text"] == ack.text and banner["version"] == ack.version, (ack, banner)
        return "showing"
    assert banner["version"] > ack.version, f"{ack} lost: the banner is back at {banner}"
    if message is None:
        assert answered >= ack.expires_at, f"{ack} gone before its expiry: {banner}"
    else:
        assert datetime.fromisoformat(message["shown_at"]) >= ack.expires_at, f"{banner} overlaps {ack}"
    return "expired"


async def check_after_restart(server: Server, client: httpx.AsyncClient, load: Load) -> float:
    """Overdue expiries fire within RESTART_GRACE; every banner's last acknowledged message survived."""

    async def nothing_overdue() -> bool:
        banners, before, _ = await listing(client)
        return all(
            b["message"] is None or datetime.fromisoformat(b["message"]["expires_at"]) > before - EXPIRY_SLACK
            for b in banners.values()
        )

    started = time.monotonic()
    await eventually(nothing_overdue, limit=RESTART_GRACE, what="overdue expiries after a restart")
    took = time.monotonic() - started
    latest = latest_acks(load.acks)
    banners, _, answered = await listing(client)
    for banner_id, ack in latest.items():
        assert banner_id in banners, f"registered banner {banner_id} lost"
        check_acknowledged_message(ack, banners[banner_id], answered)
    return took


def check_final_state(acks: list[Ack], banners: dict[str, dict], answered: datetime) -> None:
    """Strict, after the load stopped and every expiry fired."""
    by_id: dict[str, Ack] = {}
    for ack in acks:
        assert ack.banner_id in banners
        earlier = by_id.setdefault(ack.message_id, ack)
        # A replay (the same key asked again after a kill) returns the same message, never a second one.
        assert (earlier.banner_id, earlier.key, earlier.text, earlier.version, earlier.expires_at) == (
            ack.banner_id,
            ack.key,
            ack.text,
            ack.version,
            ack.expires_at,
        )
    for banner in banners.values():
        assert banner["message"] is None, f"{banner['id']} still shows a message after its expiry: {banner}"
    per_banner: dict[str, list[Ack]] = defaultdict(list)
    for ack in by_id.values():
        assert check_acknowledged_message(ack, banners[ack.banner_id], answered) == "expired"
        assert ack.expires_at - ack.shown_at == timedelta(seconds=MESSAGE_SECONDS)
        per_banner[ack.banner_id].append(ack)
    for banner_id, shown in per_banner.items():
        shown.sort(key=lambda a: a.shown_at)
        for first, second in zip(shown, shown[1:], strict=False):
            # One winner per slot: the next message starts when the previous one is over, one version on.
            assert second.shown_at >= first.expires_at, f"{banner_id}: {second} overlaps {first}"
            assert second.version > first.version, f"{banner_id}: versions out of order {first} {second}"


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_acknowledged_messages_survive_repeated_kill_9_under_load(tmp_path):
    """Expect ~20 s: 6 server starts, 5 SIGKILL cycles, at least 90 acknowledged submits checked."""
    server = Server(tmp_path)
    tasks: list[asyncio.Task[None]] = []
    try:
        await server.start()
        banner_ids = [f"crash-{i:02d}" for i in range(BANNERS)]
        async with httpx.AsyncClient(
            base_url=server.url, timeout=10, limits=httpx.Limits(max_connections=100)
        ) as client:
            for banner_id in banner_ids:
                created = await client.post("/api/v1/banners", json={"id": banner_id, "name": banner_id})
                assert created.status_code == 201, created.text
            subscriber = Subscriber(server, banner_ids)
            load = Load(server, client, subscriber)
            tasks.append(asyncio.create_task(subscriber.follow()))
            for banner_id in banner_ids:
                for worker in range(SUBMITTERS_PER_BANNER):
                    tasks.append(asyncio.create_task(load.submit_forever(banner_id, worker)))

            async def acks_reach(target: int) -> None:
                async def reached() -> bool:
                    for task in tasks:
                        if task.done():
                            task.result()  # a submitter's failed assertion ends the test at once
                    return len(load.acks) >= target

                await eventually(reached, limit=WAIT, what=f"{target} acknowledged submits")

            overdue_waits = []
            for cycle, more in enumerate(ACKS_BEFORE_KILL):
                await acks_reach(len(load.acks) + more)
                await server.kill()
                if cycle in LONG_DOWNTIME_CYCLES:
                    overdue_at = max(ack.expires_at for ack in load.acks) + EXPIRY_SLACK

                    async def all_overdue(at: datetime = overdue_at) -> bool:
                        return utcnow() > at

                    await eventually(all_overdue, limit=WAIT, what="the acknowledged messages to be overdue")
                await server.start()
                overdue_waits.append(await check_after_restart(server, client, load))
            await acks_reach(len(load.acks) + ACKS_AFTER_LAST_RESTART)
            load.stopping = True
            for task in tasks[1:]:
                task.cancel()
            await asyncio.gather(*tasks[1:], return_exceptions=True)

            async def all_free() -> bool:
                banners, _, _ = await listing(client)
                return all(b["message"] is None for b in banners.values())

            last_expiry = max(ack.expires_at for ack in load.acks)
            wait = max((last_expiry - utcnow()).total_seconds(), 0) + RESTART_GRACE
            await eventually(all_free, limit=wait, what="every message to expire")
            banners, _, answered = await listing(client)
            assert sorted(banners) == banner_ids
            check_final_state(load.acks, banners, answered)

            final_versions = {banner_id: b["version"] for banner_id, b in banners.items()}

            async def subscriber_caught_up() -> bool:
                return subscriber.versions == final_versions

            await eventually(subscriber_caught_up, limit=WAIT, what="the subscriber to catch up")
            assert subscriber.backwards == [], "a banner's version went backwards on the stream"

        kills = len(ACKS_BEFORE_KILL)
        checked = len({ack.message_id for ack in load.acks})
        assert server.starts == kills + 1 and checked >= sum(ACKS_BEFORE_KILL) + ACKS_AFTER_LAST_RESTART
        assert subscriber.connections >= kills + 1  # it followed every restart
        print(
            f"{kills} kill cycles, {checked} acknowledged messages checked "
            f"({sum(a.replayed for a in load.acks)} replayed answers), {load.refused_busy} refused busy, "
            f"{load.lost_answers} answers lost to kills and asked again, "
            f"{subscriber.frames} stream frames over {subscriber.connections} connections, "
            f"overdue expiries fired within {max(overdue_waits):.2f} s of a restart"
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop()
    assert "Traceback" not in server.log()


async def test_bookings_run_through_repeated_kill_9_each_once_in_its_slot_or_missed(tmp_path):
    """Ten banners, each a message and five bookings of 2 s slots; the server is killed (SIGKILL) twice
    while they run through, the second time staying down for three slots. The end of a message
    and the start of the next booking are one turn and one SQLite transaction, so after the restarts each
    booking showed once, never before its slot and never beside another, or is recorded as missed (its
    whole slot passed while the server was down); none is lost. Expect ~25 s."""
    server = Server(tmp_path, ("--bookings-per-client", "0"))
    slot = timedelta(seconds=MESSAGE_SECONDS)
    try:
        await server.start()
        ids = [f"queue-{i}" for i in range(10)]
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            booked: dict[str, list[dict]] = {}
            for banner_id in ids:
                assert (
                    await client.post("/api/v1/banners", json={"id": banner_id, "name": "q"})
                ).status_code == 201
                path = f"/api/v1/banners/{banner_id}"
                assert (await client.post(f"{path}/message", json={"text": "first"})).status_code == 201
                booked[banner_id] = []
                for i in range(5):
                    reply = await client.post(f"{path}/bookings", json={"text": f"booking {i}"})
                    assert reply.status_code == 202, reply.text
                    booked[banner_id].append(reply.json())
            booking_ids = {b["booking_id"] for bs in booked.values() for b in bs}

            async def started() -> int:
                try:
                    listed = (await client.get("/api/v1/banners", params={"limit": 100})).json()["items"]
                except httpx.TransportError:
                    return 0
                return sum(1 for b in listed if b["message"] and b["message"]["id"] in booking_ids)

            await eventually(started, lambda n: n >= 5, limit=WAIT, what="the first bookings started")
            await server.kill()
            await server.start()
            await eventually(started, lambda n: n >= 8, limit=WAIT, what="more bookings started")
            await server.kill()
            down_until = time.time() + 3 * slot.total_seconds()
            await eventually(lambda: time.time() > down_until, limit=WAIT, what="three slots down")
            await server.start()

            async def run_through() -> bool:
                listed = (await client.get("/api/v1/banners", params={"limit": 100})).json()["items"]
                return all(b["message"] is None and b["queue"] == [] for b in listed)

            last_end = max(datetime.fromisoformat(b["starts_at"]) for b in booking_list(booked)) + slot
            bound = max(0.0, (last_end - utcnow()).total_seconds()) + RESTART_GRACE + WAIT
            await eventually(run_through, limit=bound, what="every queue run through")
            shown = missed = 0
            for banner_id, bookings in booked.items():
                reply = await client.get(f"/api/v1/banners/{banner_id}/history", params={"limit": 50})
                ran, skipped = check_run_through(reply.json()["items"], bookings, slot.total_seconds())
                shown += len(ran)
                missed += len(skipped)
            print(f"bookings: {shown} shown, {missed} missed, of {len(booking_ids)}")
            assert shown + missed == len(booking_ids) and shown > 0 and missed > 0
        await server.stop()
        assert "Traceback" not in server.log()
    finally:
        with contextlib.suppress(Exception):
            await server.stop()


def booking_list(booked: dict[str, list[dict]]) -> list[dict]:
    return [b for bookings in booked.values() for b in bookings]
