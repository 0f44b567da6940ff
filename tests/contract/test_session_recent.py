"""``SessionStore.recent``: the session browser's listing, newest first, keyset-paged, in memory,
on SQLite and on Postgres alike."""

from __future__ import annotations

import pytest

from wayport.core.errors import InvalidRequest
from wayport.core.session import NewMessage
from wayport.testing import ManualClock

from .conftest import Stores

pytestmark = pytest.mark.anyio


def user(text: str) -> NewMessage:
    return NewMessage(message={"role": "user", "content": text})


async def test_newest_first_including_sessions_without_messages(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    first = await stores.sessions.create(tenant, agent="a")
    clock.advance(1)
    second = await stores.sessions.create(tenant, agent="a")
    clock.advance(1)
    third = await stores.sessions.create(tenant, agent="b")
    clock.advance(1)
    await stores.sessions.append(tenant, first.id, [user("back again")])  # now the newest

    found = await stores.sessions.recent(tenant, limit=10)
    assert [s.id for s in found] == [first.id, third.id, second.id]
    assert found[0].message_count == 1
    assert found[0].updated_at == clock.now()
    assert [s.id for s in await stores.sessions.recent(tenant, limit=2)] == [first.id, third.id]


async def test_pages_on_from_the_last_one_seen_even_when_times_tie(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    # Four sessions share one updated_at: the id breaks the tie, so no page skips or repeats.
    ids = []
    for i in range(7):
        if i in (0, 1, 5):
            clock.advance(1)
        ids.append((await stores.sessions.create(tenant, agent="a", session_id=f"s-{i}")).id)
    expected = [s.id for s in await stores.sessions.recent(tenant, limit=100)]
    assert sorted(expected) == sorted(ids)

    seen: list[str] = []
    before: tuple[float, str] | None = None
    pages = 0
    while True:
        page = await stores.sessions.recent(tenant, limit=3, before=before)
        if not page:
            break
        pages += 1
        seen += [s.id for s in page]
        before = (page[-1].updated_at, page[-1].id)
    assert seen == expected
    assert pages == 3
    # ties are ordered by id, descending, after the newer times
    assert expected == ["s-6", "s-5", "s-4", "s-3", "s-2", "s-1", "s-0"]


async def test_filters_by_agent(stores: Stores, tenant: str, clock: ManualClock) -> None:
    made = []
    for i in range(5):
        clock.advance(1)
        made.append(await stores.sessions.create(tenant, agent="a" if i % 2 else "b"))
    only_a = await stores.sessions.recent(tenant, limit=10, agent="a")
    assert [s.id for s in only_a] == [made[3].id, made[1].id]
    page = await stores.sessions.recent(tenant, limit=1, agent="b")
    rest = await stores.sessions.recent(
        tenant, limit=10, agent="b", before=(page[0].updated_at, page[0].id)
    )
    assert [s.id for s in page + rest] == [made[4].id, made[2].id, made[0].id]
    assert await stores.sessions.recent(tenant, limit=10, agent="nobody") == []


async def test_only_the_tenants_own_and_limit_must_be_positive(stores: Stores, tenant: str) -> None:
    mine = await stores.sessions.create(tenant, agent="a")
    await stores.sessions.create(tenant + "-other", agent="a")
    assert [s.id for s in await stores.sessions.recent(tenant, limit=10)] == [mine.id]
    assert await stores.sessions.recent(tenant + "-empty", limit=10) == []
    for bad in (0, -1):
        with pytest.raises(InvalidRequest):
            await stores.sessions.recent(tenant, limit=bad)
