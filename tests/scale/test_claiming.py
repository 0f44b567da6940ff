"""Session-exclusive claims (replicas sharing one database): a session's runs are claimed one
at a time and in order, whichever replica claims; on SQLite and the real Postgres, with
claimers racing on Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from wayport.core.session import RunStatus
from wayport.store import SqlStore, open_store

pytestmark = pytest.mark.anyio
T = "default"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[SqlStore]:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite+aiosqlite:///{request.getfixturevalue('tmp_path') / 'w.db'}"
    opened = await open_store(url)
    opened.runs.exclusive_sessions = True
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_session_runs_one_claimed_run_at_a_time_in_order(store: SqlStore) -> None:
    a = await store.sessions.create(T, agent="x")
    b = await store.sessions.create(T, agent="x")
    a1 = await store.runs.create(T, session_id=a.id, run_id="run-a1")
    a2 = await store.runs.create(T, session_id=a.id, run_id="run-a2")
    b1 = await store.runs.create(T, session_id=b.id, run_id="run-b1")
    claimed = await store.runs.claim(T, worker="w1", limit=10)
    assert [r.id for r in claimed] == [a1.id, b1.id]  # a2 waits behind a1
    assert await store.runs.claim(T, worker="w2", limit=10) == []
    await store.runs.transition(T, a1.id, RunStatus.COMPLETED)
    [next_run] = await store.runs.claim(T, worker="w2", limit=10)
    assert next_run.id == a2.id and next_run.claimed_by == "w2"


async def test_a_requeued_run_goes_before_newer_ones_of_its_session(store: SqlStore) -> None:
    s = await store.sessions.create(T, agent="x")
    first = await store.runs.create(T, session_id=s.id, run_id="run-1")
    await store.runs.create(T, session_id=s.id, run_id="run-2")
    [held] = await store.runs.claim(T, worker="dead", limit=5)
    assert held.id == first.id
    requeued = await store.runs.requeue_stale(T, stale_before=held.heartbeat_at + 1)  # type: ignore[operator]
    assert [r.id for r in requeued] == [first.id]
    [again] = await store.runs.claim(T, worker="alive", limit=5)
    assert (again.id, again.attempt) == (first.id, 2)


@pytest.mark.postgres
async def test_racing_claimers_never_run_two_of_a_session(postgres_url: str) -> None:
    stores = [await open_store(postgres_url) for _ in range(4)]
    for s in stores:
        s.runs.exclusive_sessions = True
    try:
        sessions = [await stores[0].sessions.create(T, agent="x") for _ in range(5)]
        for j in range(4):
            for s in sessions:
                await stores[0].runs.create(T, session_id=s.id, run_id=f"run-{s.id}-{j}")
        done: list[str] = []
        while len(done) < 20:
            batches = await asyncio.gather(
                *(st.runs.claim(T, worker=f"w{i}", limit=20) for i, st in enumerate(stores))
            )
            claimed = [r for batch in batches for r in batch]
            by_session = [r.session_id for r in claimed]
            assert len(by_session) == len(set(by_session)), "two runs of a session at once"
            assert claimed, "nothing claimable while runs remain"
            for r in claimed:
                earlier = sum(d.startswith(f"run-{r.session_id}-") for d in done)
                assert r.id == f"run-{r.session_id}-{earlier}"  # in order
                await stores[0].runs.transition(T, r.id, RunStatus.COMPLETED)
                done.append(r.id)
    finally:
        for s in stores:
            await s.close()
