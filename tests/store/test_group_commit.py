"""Group commit on SQLite: concurrent writes share transactions, and each still gets the
all-or-nothing outcome it would have had alone."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict

import pytest
import sqlalchemy as sa

from wayport.core.errors import Conflict, StoreError
from wayport.core.session import NewMessage
from wayport.store import SqlStore, open_store
from wayport.store.schema import sessions as sessions_table
from wayport.store.scope import Scope, scoped_insert
from wayport.store.sessions import append_messages
from wayport.testing import ManualClock

pytestmark = pytest.mark.anyio
T = "default"


def said(text: str, key: str | None = None) -> NewMessage:
    return NewMessage(message={"role": "user", "content": text}, idempotency_key=key)


async def contents(store: SqlStore, session_id: str) -> list[object]:
    history = await store.sessions.history(T, session_id, limit=10_000)
    assert [m.seq for m in history] == list(range(1, len(history) + 1))  # no gaps, no repeats
    return [m.content for m in history]


async def test_many_concurrent_writers_share_few_commits(
    sqlite_url: str, clock: ManualClock
) -> None:
    store = await open_store(sqlite_url, now=clock.now)
    sessions = [(await store.sessions.create(T, agent="a")).id for _ in range(8)]
    jobs, commits = store.db.stats.jobs, store.db.stats.commits

    n = len(sessions)

    async def writer(i: int) -> list[int]:
        # every fifth writer also retries the message of the writer before it on its session
        batch = [said(f"m{i}", key=f"k{i}")]
        if i % 5 == 0 and i >= n:
            batch.append(said(f"m{i - n}", key=f"k{i - n}"))
        return [m.seq for m in await store.sessions.append(T, sessions[i % n], batch)]

    seqs = await asyncio.gather(*(writer(i) for i in range(400)))

    assert store.db.stats.jobs - jobs == 400
    assert store.db.stats.commits - commits < 400 / 10, store.db.stats
    expected: dict[str, list[str]] = defaultdict(list)
    for i in range(400):
        expected[sessions[i % n]].append(f"m{i}")
    for sid in sessions:
        assert await contents(store, sid) == expected[sid]  # arrival order is commit order
    for i in (i for i in range(n, 400) if i % 5 == 0):
        assert seqs[i][1] == seqs[i - n][0]  # the retry found the stored message
    await store.close()

    reopened = await open_store(sqlite_url, now=clock.now)
    for sid in sessions:
        assert await contents(reopened, sid) == expected[sid]
    await reopened.close()


async def test_a_failing_job_does_not_sink_its_batch(sqlite_url: str, clock: ManualClock) -> None:
    store = await open_store(sqlite_url, now=clock.now)
    s = await store.sessions.create(T, agent="a")
    retries = store.db.stats.retries

    def half_then_fail(conn: sa.Connection) -> None:
        append_messages(conn, Scope(T), s.id, [said("doomed")], now=clock.now())
        raise Conflict("changed my mind after writing")

    good = [store.sessions.append(T, s.id, [said(f"ok{i}")]) for i in range(20)]
    results = await asyncio.gather(
        *good[:10], store.db.write(half_then_fail), *good[10:], return_exceptions=True
    )

    assert isinstance(results[10], Conflict)
    assert not any(isinstance(r, BaseException) for r in results[:10] + results[11:])
    assert await contents(store, s.id) == [f"ok{i}" for i in range(20)]
    assert store.db.stats.retries - retries == 1
    await store.close()


async def test_a_job_that_raises_leaves_nothing(sqlite_url: str, clock: ManualClock) -> None:
    store = await open_store(sqlite_url, now=clock.now)

    def create_then_fail(conn: sa.Connection) -> None:
        values = {"id": "s-ghost", "agent": "a", "created_at": 1.0, "updated_at": 1.0}
        Scope(T).execute(conn, scoped_insert(sessions_table), values)
        raise ValueError("bug after the insert")

    with pytest.raises(ValueError, match="bug after the insert"):
        await store.db.write(create_then_fail)
    assert await store.sessions.get(T, "s-ghost") is None
    await store.close()


async def test_a_database_failure_fails_the_batch_and_the_writer_carries_on(
    sqlite_url: str, clock: ManualClock
) -> None:
    store = await open_store(sqlite_url, now=clock.now)
    s = await store.sessions.create(T, agent="a")

    def database_fails(conn: sa.Connection) -> None:
        # sqlite reports this as OperationalError, the class a dying database raises too
        conn.execute(sa.text("SELECT * FROM no_such_table"))

    results = await asyncio.gather(
        store.sessions.append(T, s.id, [said("same batch")]),
        store.db.write(database_fails),
        return_exceptions=True,
    )
    assert all(isinstance(r, StoreError) for r in results), results
    assert await contents(store, s.id) == []
    await store.sessions.append(T, s.id, [said("later")])
    assert await contents(store, s.id) == ["later"]
    await store.close()


async def test_a_caller_that_gives_up_before_its_batch_writes_nothing(
    sqlite_url: str, clock: ManualClock
) -> None:
    store = await open_store(sqlite_url, now=clock.now)
    s = await store.sessions.create(T, agent="a")
    loop = asyncio.get_running_loop()
    inside, release = asyncio.Event(), threading.Event()

    def hold_the_writer(conn: sa.Connection) -> None:  # runs on the writer thread
        loop.call_soon_threadsafe(inside.set)
        release.wait(timeout=60)  # a safety net against a hung test, never reached

    holder = asyncio.create_task(store.db.write(hold_the_writer))
    await inside.wait()
    abandoned = asyncio.create_task(store.sessions.append(T, s.id, [said("abandoned")]))
    kept = asyncio.create_task(store.sessions.append(T, s.id, [said("kept")]))
    await asyncio.sleep(0)  # one scheduling turn (no waiting): both queue behind the held job
    abandoned.cancel()
    release.set()
    await holder
    await kept
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    assert await contents(store, s.id) == ["kept"]
    await store.close()


async def test_close_commits_what_is_queued_then_refuses(
    sqlite_url: str, clock: ManualClock
) -> None:
    store = await open_store(sqlite_url, now=clock.now)
    s = await store.sessions.create(T, agent="a")
    appends = [store.sessions.append(T, s.id, [said(f"m{i}")]) for i in range(5)]
    await asyncio.gather(*appends, store.close())
    with pytest.raises(StoreError):
        await store.sessions.append(T, s.id, [said("too late")])
    await store.close()  # idempotent

    reopened = await open_store(sqlite_url, now=clock.now)
    assert await contents(reopened, s.id) == [f"m{i}" for i in range(5)]
    await reopened.close()
