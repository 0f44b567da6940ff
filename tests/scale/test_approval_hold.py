"""Session-exclusive claims hold a session while one of its runs waits for approval: with
replicas sharing the database, no replica claims the session's later runs until the paused
run is decided (``Lanes.hold`` does the same inside one process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from wayport.core.session import RunStatus
from wayport.store import SqlStore, open_store

pytestmark = pytest.mark.anyio
T = "default"
PAUSED = {"pending_approval": [{"id": "call-1", "name": "refund"}]}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def replicas(request: pytest.FixtureRequest) -> AsyncIterator[list[SqlStore]]:
    """Two claimers on one database, as two replicas have."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite+aiosqlite:///{request.getfixturevalue('tmp_path') / 'w.db'}"
    opened = [await open_store(url), await open_store(url)]
    for store in opened:
        store.runs.exclusive_sessions = True
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


async def claim_all(replicas: list[SqlStore]) -> list[str]:
    batches = await asyncio.gather(
        *(r.runs.claim(T, worker=f"w{i}", limit=10) for i, r in enumerate(replicas))
    )
    return sorted(run.id for batch in batches for run in batch)


async def test_a_paused_run_holds_its_session_on_every_replica(replicas: list[SqlStore]) -> None:
    a, b = replicas
    paused_session = await a.sessions.create(T, agent="x")
    other_session = await a.sessions.create(T, agent="x")
    await a.runs.create(T, session_id=paused_session.id, run_id="run-1")
    assert await claim_all(replicas) == ["run-1"]
    await a.runs.transition(T, "run-1", RunStatus.REQUIRES_APPROVAL, output=PAUSED)

    await b.runs.create(T, session_id=paused_session.id, run_id="run-2")
    await b.runs.create(T, session_id=other_session.id, run_id="run-other")
    assert await claim_all(replicas) == ["run-other"]  # run-2 waits for the decision
    assert await claim_all(replicas) == []
    assert (await a.runs.get(T, "run-2")).status is RunStatus.QUEUED  # type: ignore[union-attr]

    # decided: the paused run goes first, then the session's next one
    await b.runs.transition(
        T, "run-1", RunStatus.QUEUED, expected=(RunStatus.REQUIRES_APPROVAL,), output=PAUSED
    )
    assert await claim_all(replicas) == ["run-1"]
    assert await claim_all(replicas) == []
    await a.runs.transition(T, "run-1", RunStatus.COMPLETED)
    assert await claim_all(replicas) == ["run-2"]


async def test_a_run_waiting_on_the_client_does_not_hold_its_session(
    replicas: list[SqlStore],
) -> None:
    a, _ = replicas
    session = await a.sessions.create(T, agent="x")
    await a.runs.create(T, session_id=session.id, run_id="run-1")
    assert await claim_all(replicas) == ["run-1"]
    await a.runs.transition(T, "run-1", RunStatus.REQUIRES_ACTION)
    await a.runs.create(T, session_id=session.id, run_id="run-2")
    assert await claim_all(replicas) == ["run-2"]
