"""The ``SessionStore`` contract: memory, SQLite and Postgres behave the same."""

from __future__ import annotations

import asyncio

import pytest

from wayport.core.errors import Conflict, InvalidRequest, NotFound
from wayport.core.session import NewMessage, StepKind
from wayport.core.types import Message
from wayport.testing import ManualClock

from .conftest import Stores

pytestmark = pytest.mark.anyio


def user(text: str, key: str | None = None) -> NewMessage:
    return NewMessage(message={"role": "user", "content": text}, idempotency_key=key)


async def test_create_then_get(stores: Stores, tenant: str, clock: ManualClock) -> None:
    created = await stores.sessions.create(
        tenant, agent="support", agent_version="v3", metadata={"channel": "web", "n": [1, 2]}
    )
    got = await stores.sessions.get(tenant, created.id)
    assert got == created
    assert got.tenant_id == tenant
    assert got.metadata == {"channel": "web", "n": [1, 2]}
    assert got.created_at == got.updated_at == clock.now()
    assert (got.message_count, got.cold, got.summary, got.pinned) == (0, False, None, ())
    assert await stores.sessions.get(tenant, "sess-missing") is None


async def test_a_taken_id_conflicts(stores: Stores, tenant: str) -> None:
    await stores.sessions.create(tenant, agent="a", session_id="s-1")
    with pytest.raises(Conflict):
        await stores.sessions.create(tenant, agent="b", session_id="s-1")
    kept = await stores.sessions.get(tenant, "s-1")
    assert kept is not None and kept.agent == "a"


async def test_update_changes_only_what_is_given(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    s = await stores.sessions.create(tenant, agent="a", metadata={"k": "v"})
    clock.advance(5)
    updated = await stores.sessions.update(tenant, s.id, summary="they said hi", pinned=["vip"])
    assert (updated.summary, updated.pinned, updated.metadata) == (
        "they said hi",
        ("vip",),
        {"k": "v"},
    )
    assert updated.updated_at == s.updated_at + 5
    updated = await stores.sessions.update(tenant, s.id, summary=None, agent_version="v2")
    assert (updated.summary, updated.agent_version, updated.pinned) == (None, "v2", ("vip",))
    assert await stores.sessions.get(tenant, s.id) == updated
    with pytest.raises(NotFound):
        await stores.sessions.update(tenant, "sess-missing", summary="x")


async def test_delete_takes_messages_runs_and_steps_along(stores: Stores, tenant: str) -> None:
    s = await stores.sessions.create(tenant, agent="a")
    await stores.sessions.append(tenant, s.id, [user("hi")])
    run = await stores.runs.create(tenant, session_id=s.id)
    await stores.runs.record_step(tenant, run.id, step_no=1, kind=StepKind.MODEL, payload="p")
    await stores.sessions.delete(tenant, s.id)
    assert await stores.sessions.get(tenant, s.id) is None
    assert await stores.runs.get(tenant, run.id) is None
    assert await stores.runs.unfinished(tenant) == []
    with pytest.raises(NotFound):
        await stores.sessions.history(tenant, s.id)
    with pytest.raises(NotFound):
        await stores.runs.steps(tenant, run.id)
    with pytest.raises(NotFound):
        await stores.sessions.delete(tenant, s.id)
    # the id is free again and starts from scratch
    again = await stores.sessions.create(tenant, agent="a", session_id=s.id)
    assert again.message_count == 0
    assert await stores.sessions.history(tenant, s.id) == []


async def test_append_numbers_messages_in_order(stores: Stores, tenant: str) -> None:
    s = await stores.sessions.create(tenant, agent="a")
    tool_call: Message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call-1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    first = await stores.sessions.append(tenant, s.id, [user("one"), NewMessage(message=tool_call)])
    second = await stores.sessions.append(
        tenant,
        s.id,
        [
            NewMessage(
                message={"role": "tool", "content": "42", "tool_call_id": "call-1", "name": "f"},
                tokens=3,
            ),
            NewMessage(message={"role": "user", "content": [{"type": "text", "text": "two"}]}),
        ],
    )
    assert [m.seq for m in first + second] == [1, 2, 3, 4]
    assert first[1].to_message() == tool_call
    assert second[0].to_message() == {
        "role": "tool",
        "content": "42",
        "name": "f",
        "tool_call_id": "call-1",
    }
    assert second[0].tokens == 3
    assert await stores.sessions.history(tenant, s.id) == first + second
    got = await stores.sessions.get(tenant, s.id)
    assert got is not None and got.message_count == 4


async def test_a_retried_message_is_stored_once(stores: Stores, tenant: str) -> None:
    s = await stores.sessions.create(tenant, agent="a")
    [first] = await stores.sessions.append(tenant, s.id, [user("hi", key="in-1")])
    again = await stores.sessions.append(
        tenant, s.id, [user("hi", key="in-1"), user("new", key="in-2"), user("new", key="in-2")]
    )
    assert again[0] == first
    assert again[1] == again[2]
    assert [m.seq for m in again] == [1, 2, 2]
    later = await stores.sessions.append(tenant, s.id, [user("no key"), user("no key")])
    assert [m.seq for m in later] == [3, 4]  # no gap where the retries were
    history = await stores.sessions.history(tenant, s.id)
    assert [m.content for m in history] == ["hi", "new", "no key", "no key"]


async def test_concurrent_appends_take_turns(stores: Stores, tenant: str) -> None:
    s = await stores.sessions.create(tenant, agent="a")
    appended = await asyncio.gather(
        *(stores.sessions.append(tenant, s.id, [user(f"{i}a"), user(f"{i}b")]) for i in range(20))
    )
    seqs = sorted(m.seq for pair in appended for m in pair)
    assert seqs == list(range(1, 41))
    for pair in appended:
        assert pair[1].seq == pair[0].seq + 1  # one append's messages stay together
    history = await stores.sessions.history(tenant, s.id)
    assert [m.seq for m in history] == seqs


async def test_concurrent_retries_store_one_message(stores: Stores, tenant: str) -> None:
    s = await stores.sessions.create(tenant, agent="a")
    retries = await asyncio.gather(
        *(stores.sessions.append(tenant, s.id, [user("once", key="in-1")]) for _ in range(10))
    )
    assert {r[0].seq for r in retries} == {1}
    assert [m.content for m in await stores.sessions.history(tenant, s.id)] == ["once"]


async def test_append_to_a_missing_session(stores: Stores, tenant: str) -> None:
    with pytest.raises(NotFound):
        await stores.sessions.append(tenant, "sess-missing", [user("hi")])


async def test_a_failed_append_leaves_nothing(stores: Stores, tenant: str) -> None:
    s = await stores.sessions.create(tenant, agent="a")
    await stores.sessions.append(tenant, s.id, [user("kept")])
    unstorable = NewMessage(message={"role": "user", "content": [{"bad": object()}]})
    with pytest.raises(InvalidRequest):
        await stores.sessions.append(tenant, s.id, [user("lost"), unstorable])
    assert [m.content for m in await stores.sessions.history(tenant, s.id)] == ["kept"]
    [nxt] = await stores.sessions.append(tenant, s.id, [user("next")])
    assert nxt.seq == 2


async def test_history_pages_by_seq(stores: Stores, tenant: str) -> None:
    s = await stores.sessions.create(tenant, agent="a")
    await stores.sessions.append(tenant, s.id, [user(f"m{i}") for i in range(1, 26)])
    pages, after = [], 0
    while page := await stores.sessions.history(tenant, s.id, after=after, limit=10):
        pages.append([m.seq for m in page])
        after = page[-1].seq
    assert pages == [list(range(1, 11)), list(range(11, 21)), list(range(21, 26))]
    assert await stores.sessions.history(tenant, s.id, after=25) == []
    assert [m.seq for m in await stores.sessions.history(tenant, s.id, after=23)] == [24, 25]
    with pytest.raises(ValueError):
        await stores.sessions.history(tenant, s.id, limit=0)
    with pytest.raises(NotFound):
        await stores.sessions.history(tenant, "sess-missing")


async def test_archived_history_reads_back_transparently(stores: Stores, tenant: str) -> None:
    s = await stores.sessions.create(tenant, agent="a")
    await stores.sessions.append(tenant, s.id, [user(f"m{i}") for i in range(1, 11)])
    before = await stores.sessions.history(tenant, s.id)

    assert await stores.sessions.archive(tenant, s.id, keep_last=3) == 7
    got = await stores.sessions.get(tenant, s.id)
    assert got is not None and got.cold
    assert await stores.sessions.history(tenant, s.id) == before
    for after, limit in [(0, 4), (4, 4), (5, 2), (6, 3), (7, 10), (9, 1)]:
        page = await stores.sessions.history(tenant, s.id, after=after, limit=limit)
        assert page == before[after : after + limit], (after, limit)

    [m11] = await stores.sessions.append(tenant, s.id, [user("m11")])
    assert m11.seq == 11
    assert await stores.sessions.archive(tenant, s.id) == 4
    assert await stores.sessions.archive(tenant, s.id) == 0
    assert await stores.sessions.history(tenant, s.id) == [*before, m11]
    page = await stores.sessions.history(tenant, s.id, after=5, limit=5)
    assert [m.seq for m in page] == [6, 7, 8, 9, 10]
    with pytest.raises(NotFound):
        await stores.sessions.archive(tenant, "sess-missing")


async def test_a_retry_after_archiving_is_stored_again(stores: Stores, tenant: str) -> None:
    """Deduplication covers the hot history only: archived keys are not searched."""
    s = await stores.sessions.create(tenant, agent="a")
    await stores.sessions.append(tenant, s.id, [user("hi", key="k")])
    await stores.sessions.archive(tenant, s.id)
    [again] = await stores.sessions.append(tenant, s.id, [user("hi", key="k")])
    assert again.seq == 2


async def test_idle_lists_sessions_with_history_to_archive(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    quiet = await stores.sessions.create(tenant, agent="a")
    await stores.sessions.append(tenant, quiet.id, [user("hi")])
    empty = await stores.sessions.create(tenant, agent="a")
    clock.advance(10)
    older = await stores.sessions.create(tenant, agent="a")
    await stores.sessions.append(tenant, older.id, [user("hi")])
    clock.advance(10)
    busy = await stores.sessions.create(tenant, agent="a")
    await stores.sessions.append(tenant, busy.id, [user("hi")])

    idle = await stores.sessions.idle(tenant, updated_before=clock.now() - 5)
    assert [s.id for s in idle] == [quiet.id, older.id]  # least recently updated first
    assert empty.id not in [s.id for s in idle]
    await stores.sessions.archive(tenant, quiet.id)
    idle = await stores.sessions.idle(tenant, updated_before=clock.now() + 1, limit=1)
    assert [s.id for s in idle] == [older.id]
