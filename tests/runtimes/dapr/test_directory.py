"""The Dapr runtime's fleet directory on a real Redis: it converges to the actors' state whatever order
and repetition its writes come in (each write is stamped with the banner's life and version)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from airdisplay.domain import Banner, Message
from airdisplay.runtimes.dapr import RedisDirectory
from airdisplay.runtimes.dapr._directory import stamp_of

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def banner(version: int, name: str = "Cessna", created: datetime = T0, text: str | None = None) -> Banner:
    message = None
    if text is not None:
        message = Message(id=f"m{version}", text=text, shown_at=T0, expires_at=T0 + timedelta(seconds=60))
    return Banner(
        id="n1", name=name, version=version, display_version=version, message=message,
        created_at=created, updated_at=created,
    )  # fmt: skip


@pytest.fixture
async def directory(redis_url):
    found = RedisDirectory(redis_url)
    yield found
    await found.close()


async def test_an_older_write_never_replaces_a_newer_one(directory):
    assert await directory.put(banner(3, text="newest"))
    assert not await directory.put(banner(2, text="older"))
    assert not await directory.put(banner(1))  # a replayed "created"
    assert not await directory.put(banner(3, text="same version again"))
    [found] = await directory.page(None, 10)
    assert found.version == 3 and found.message is not None and found.message.text == "newest"


async def test_a_deletion_is_not_undone_by_a_late_write_of_the_same_life(directory):
    await directory.put(banner(2))
    assert await directory.delete("n1", stamp_of(T0), 3, "Cessna")
    assert not await directory.put(banner(2))
    assert await directory.page(None, 10) == []
    assert await directory.page(None, 10, search="cessna") == []


async def test_a_banner_registered_again_after_deletion_is_listed_under_its_new_name(directory):
    await directory.put(banner(4, text="old life"))
    await directory.delete("n1", stamp_of(T0), 5, "Cessna")
    later = T0 + timedelta(minutes=1)
    assert await directory.put(banner(1, name="Glider", created=later))
    assert not await directory.delete("n1", stamp_of(T0), 6, "Cessna")  # a late deletion of the old life
    assert [b.name for b in await directory.page(None, 10)] == ["Glider"]
    assert [b.id for b in await directory.page(None, 10, search="glider")] == ["n1"]
    assert await directory.page(None, 10, search="cessna") == []


async def test_only_banners_showing_an_overdue_message_are_overdue(directory):
    await directory.put(banner(2, text="showing"))
    due = (T0 + timedelta(seconds=60)).timestamp()
    assert await directory.overdue(due - 1, 10) == []
    assert [b.id for b in await directory.overdue(due + 1, 10)] == ["n1"]
    await directory.put(banner(3))  # expired: no message any more
    assert await directory.overdue(due + 1, 10) == []


def life_of(banner_id: str, version: int, created: datetime = T0) -> Banner:
    """Version `version` of a banner renamed at every change; every third version shows a message."""
    message = None
    if version % 3 == 0:
        expires = created + timedelta(seconds=version)
        message = Message(id=f"m{version}", text=f"v{version}", shown_at=created, expires_at=expires)
    return Banner(
        id=banner_id, name=f"{banner_id}-name-{version:03d}", version=version, display_version=version,
        message=message, created_at=created, updated_at=created,
    )  # fmt: skip


@pytest.fixture
async def replicas(redis_url):
    """Three directories on the same Redis, each with its own connection pool, as three replicas have."""
    found = [RedisDirectory(redis_url) for _ in range(3)]
    yield found
    for directory in found:
        await directory.close()


async def test_each_write_in_a_random_order_is_taken_only_if_newer_than_all_before_it(directory):
    versions = list(range(1, 41))
    random.Random(14).shuffle(versions)
    newest = 0
    for version in versions:
        assert await directory.put(life_of("n1", version)) == (version > newest), version
        newest = max(newest, version)
    assert await directory.recorded("n1") == (stamp_of(T0), 40, "n1-name-040", True)


async def test_concurrent_writers_in_random_order_end_with_each_banners_newest_version(replicas):
    ids, newest = [f"n{i}" for i in range(5)], 30
    writes = [(banner_id, version) for banner_id in ids for version in range(1, newest + 1)]
    random.Random(14).shuffle(writes)
    await asyncio.gather(
        *(replicas[i % 3].put(life_of(banner_id, version)) for i, (banner_id, version) in enumerate(writes))
    )
    directory = replicas[0]
    listed = await directory.page(None, 100)
    assert [(b.id, b.version, b.name) for b in listed] == [(i, newest, f"{i}-name-{newest:03d}") for i in ids]
    assert listed == [life_of(i, newest) for i in ids]
    # The name index and the expiry index follow the newest version too, not a late older one.
    assert [b.id for b in await directory.page(None, 100, search=f"n3-name-{newest:03d}")] == ["n3"]
    for version in (1, newest // 2, newest - 1):
        assert await directory.page(None, 100, search=f"n3-name-{version:03d}") == [], version
    assert [b.id for b in await directory.overdue((T0 + timedelta(days=1)).timestamp(), 100)] == ids
    assert await directory.overdue((T0 + timedelta(seconds=newest - 1)).timestamp(), 100) == []


async def test_a_deletion_racing_late_writes_of_the_same_life_leaves_it_deleted(replicas):
    deleted_at = 11  # a deleted change's version is one past the banner's last
    writes = [replicas[v % 3].put(life_of("n1", v)) for v in range(1, deleted_at)]
    writes.append(replicas[0].delete("n1", stamp_of(T0), deleted_at, "n1-name-010"))
    random.Random(14).shuffle(writes)
    await asyncio.gather(*writes)
    directory = replicas[1]
    assert await directory.page(None, 10) == []
    assert await directory.page(None, 10, search="n1-name") == []
    assert await directory.overdue((T0 + timedelta(days=1)).timestamp(), 10) == []
    assert await directory.recorded("n1") == (stamp_of(T0), deleted_at, "n1-name-010", False)


async def test_a_new_life_wins_over_racing_writes_and_deletions_of_the_old_one(replicas):
    later = T0 + timedelta(minutes=1)
    writes = [replicas[v % 3].put(life_of("n1", v)) for v in range(1, 11)]
    writes.append(replicas[0].delete("n1", stamp_of(T0), 11, "n1-name-010"))
    writes += [replicas[v % 3].put(life_of("n1", v, created=later)) for v in range(1, 4)]
    random.Random(14).shuffle(writes)
    await asyncio.gather(*writes)
    directory = replicas[2]
    assert await directory.page(None, 10) == [life_of("n1", 3, created=later)]
    assert await directory.recorded("n1") == (stamp_of(later), 3, "n1-name-003", True)
    assert await directory.page(None, 10, search="n1-name-010") == []


async def test_a_deletion_older_than_the_recorded_state_is_ignored(directory):
    await directory.put(banner(5))
    assert not await directory.delete("n1", stamp_of(T0), 5, "Cessna")
    assert not await directory.delete("n1", stamp_of(T0 - timedelta(minutes=1)), 9, "Cessna")  # an older life
    assert [b.version for b in await directory.page(None, 10)] == [5]
    assert await directory.recorded("n1") == (stamp_of(T0), 5, "cessna", True)


async def test_replicas_asking_for_a_shared_secret_at_once_all_get_the_one_made_first(redis_url):
    replicas = [RedisDirectory(redis_url) for _ in range(5)]
    try:
        secrets = await asyncio.gather(
            *(d.shared_secret("client-hash", 32) for d in replicas for _ in range(4))
        )
        assert len(set(secrets)) == 1 and len(secrets[0]) == 32
        assert await replicas[0].shared_secret("client-hash", 32) == secrets[0]  # and it stays
        assert await replicas[0].shared_secret("other", 32) != secrets[0]
    finally:
        for d in replicas:
            await d.close()


async def test_a_shared_secret_of_the_wrong_size_is_refused_not_used(directory, redis_url):
    await directory.shared_secret("short", 16)
    with pytest.raises(ValueError, match="does not hold 32 bytes"):
        await directory.shared_secret("short", 32)
