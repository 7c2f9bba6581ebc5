"""The Dapr runtime's fleet directory on a real Redis: it converges to the actors' state whatever order
and repetition its writes come in (each write is stamped with the banner's life and version)."""

from __future__ import annotations

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
