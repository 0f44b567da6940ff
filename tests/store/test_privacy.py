"""Privacy requests and retention on real SQLite and Postgres: a user's data exported whole
(archived history and sealed contents included), erased without touching other users or
tenants, and sessions past their retention swept with an explicit clock."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from wayport.core.errors import InvalidRequest, NotFound
from wayport.core.session import NewMessage, RunStatus, StepKind
from wayport.service.privacy import DAY, PrivacyService, Subject
from wayport.store import SqlStore, open_store
from wayport.store.privacy import SqlPrivacyStore
from wayport.store.schema import usage_ledger
from wayport.store.sealing import Sealer, generate_key
from wayport.testing import ManualClock

pytestmark = pytest.mark.anyio
SEALER = Sealer.parse(generate_key("k1"))


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("fresh_postgres"))
    return f"sqlite+aiosqlite:///{tmp_path}/wayport.db"


@pytest.fixture
async def store(url: str, clock: ManualClock) -> AsyncIterator[SqlStore]:
    opened = await open_store(url, now=clock.now, sealer=SEALER)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def tenant() -> str:
    return f"t-{os.urandom(4).hex()}"


def _service(store: SqlStore, clock: ManualClock, days: float | None = None) -> PrivacyService:
    return PrivacyService(
        store=lambda: SqlPrivacyStore.of(store, sealer=SEALER), retention_days=days, now=clock.now
    )


async def _session(store: SqlStore, tenant: str, user: str | None, text: str) -> str:
    s = await store.sessions.create(tenant, agent="a", metadata={"user": user} if user else {})
    await store.sessions.append(
        tenant, s.id, [NewMessage(message={"role": "user", "content": text})]
    )
    run = await store.runs.create(tenant, session_id=s.id, input={"text": text})
    await store.runs.claim(tenant, worker="w")
    await store.runs.record_step(
        tenant,
        run.id,
        step_no=1,
        kind=StepKind.MODEL,
        payload={"said": text},
        messages=[NewMessage(message={"role": "assistant", "content": f"re: {text}"})],
        worker="w",
    )
    await store.runs.transition(tenant, run.id, RunStatus.COMPLETED, output={"text": "ok"})

    def usage(conn: sa.Connection) -> None:
        conn.execute(
            sa.insert(usage_ledger).values(
                tenant_id=tenant,
                id=f"u-{s.id}",
                at=1.0,
                kind="chat",
                user_id=user,
                session_id=s.id,
                run_id=run.id,
                model="m",
                prompt_tokens=3,
                completion_tokens=4,
                cost=0.0,
                latency_ms=1.0,
                status="ok",
            )
        )

    await store.db.write(usage)
    return s.id


async def test_export_everything_of_a_user(
    store: SqlStore, tenant: str, clock: ManualClock
) -> None:
    mine = []
    for i in range(2):
        mine.append(await _session(store, tenant, "alice", f"alice says {i}"))
        clock.advance(1)  # export lists sessions oldest first
    await _session(store, tenant, "bob", "bob says hi")
    await _session(store, f"{tenant}-other", "alice", "other tenant's alice")
    await store.sessions.archive(tenant, mine[0], keep_last=1)  # cold history is exported too
    data = await _service(store, clock).export(tenant, Subject(user="alice"))
    assert [s["id"] for s in data["sessions"]] == mine
    texts = [m["content"] for s in data["sessions"] for m in s["messages"]]
    assert texts == ["alice says 0", "re: alice says 0", "alice says 1", "re: alice says 1"]
    assert [r["input"] for r in data["runs"]] == [
        {"text": "alice says 0"},
        {"text": "alice says 1"},
    ]
    assert data["runs"][0]["steps"][0]["payload"] == {"said": "alice says 0"}
    assert {u["session_id"] for u in data["usage"]} == set(mine)
    assert "bob" not in repr(data) and "other tenant" not in repr(data)
    one = await _service(store, clock).export(tenant, Subject(session=mine[1]))
    assert [s["id"] for s in one["sessions"]] == [mine[1]]


async def test_erase_a_user_leaves_others(store: SqlStore, tenant: str, clock: ManualClock) -> None:
    alice = await _session(store, tenant, "alice", "alice data")
    bob = await _session(store, tenant, "bob", "bob data")
    other = await _session(store, f"{tenant}-x", "alice", "other tenant")
    service = _service(store, clock)
    assert await service.erase(tenant, Subject(user="alice")) == {
        "sessions": 1,
        "usage_rows": 1,
        "channel_messages": 0,
    }
    assert await store.sessions.get(tenant, alice) is None
    assert await store.sessions.get(tenant, bob) is not None
    assert await store.sessions.get(f"{tenant}-x", other) is not None
    empty = await service.export(tenant, Subject(user="alice"))
    assert empty["sessions"] == [] and empty["runs"] == [] and empty["usage"] == []
    with pytest.raises(NotFound):
        await service.erase(tenant, Subject(session=alice))
    with pytest.raises(InvalidRequest):
        Subject(user="a", session="b")


async def test_retention_sweeps_idle_sessions(
    store: SqlStore, tenant: str, clock: ManualClock
) -> None:
    old = await _session(store, tenant, "u", "old")
    clock.advance(20 * DAY)
    fresh = await _session(store, tenant, "u", "fresh")
    off = _service(store, clock, days=None)
    assert await off.sweep() == 0
    service = _service(store, clock, days=30)
    assert await service.sweep() == 0  # nothing is 30 days idle yet
    clock.advance(15 * DAY)  # old: 35 days idle, fresh: 15
    assert await service.sweep() >= 1
    assert await store.sessions.get(tenant, old) is None
    assert await store.sessions.get(tenant, fresh) is not None
    assert await service.sweep(now=clock.now() + 31 * DAY) >= 1
    assert await store.sessions.get(tenant, fresh) is None
