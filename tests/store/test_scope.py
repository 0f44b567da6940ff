"""Every statement the SQL stores send is scoped by tenant.

The stores build their SQL through ``Scope``; this audit watches what actually reaches the
database while every store method runs, and fails on any statement that names a tenant table
more often than it constrains ``tenant_id``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from wayport.core.errors import NotFound
from wayport.core.session import NewMessage, RunStatus, StepKind
from wayport.store import SqlStore, open_store
from wayport.store.schema import TENANT_TABLES, messages, runs, sessions
from wayport.store.scope import Scope, scoped_delete, scoped_insert, scoped_select, scoped_update
from wayport.testing import ManualClock

pytestmark = pytest.mark.anyio

_TABLES = "|".join(t.name for t in TENANT_TABLES)
_USES = re.compile(rf"\b(?:FROM|UPDATE|INTO|JOIN)\s+({_TABLES})\b", re.IGNORECASE)
# a predicate names the column through its table (``runs.tenant_id = ?``); SET clauses do not
_SCOPED = re.compile(r"\w\.tenant_id\s*=", re.IGNORECASE)


def unscoped(statement: str) -> bool:
    """True when the statement reads or changes a tenant table without a tenant predicate
    for each use (inserts carry the tenant as a column instead)."""
    if statement.lstrip().upper().startswith("INSERT"):
        return "tenant_id" not in statement
    return len(_USES.findall(statement)) > len(_SCOPED.findall(statement))


@contextmanager
def audit(store: SqlStore) -> Iterator[list[str]]:
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    engine = store.db.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


async def exercise(store: SqlStore, clock: ManualClock) -> None:
    """Every method of both stores, including their error paths."""
    t, other = "acme", "globex"
    s = await store.sessions.create(t, agent="a", metadata={"k": 1})
    await store.sessions.get(t, s.id)
    await store.sessions.update(t, s.id, summary="x", pinned=["p"])
    await store.sessions.append(
        t, s.id, [NewMessage(message={"role": "user", "content": "hi"}, idempotency_key="k")]
    )
    await store.sessions.append(
        t, s.id, [NewMessage(message={"role": "user", "content": "hi"}, idempotency_key="k")]
    )
    await store.sessions.archive(t, s.id, keep_last=0)
    await store.sessions.history(t, s.id, after=0, limit=5)
    await store.sessions.idle(t, updated_before=clock.now() + 1)
    run = await store.runs.create(t, session_id=s.id, input={"x": 1})
    await store.runs.get(t, run.id)
    await store.runs.claim(t, worker="w")
    await store.runs.heartbeat(t, run.id, worker="w")
    await store.runs.record_step(
        t, run.id, step_no=1, kind=StepKind.MODEL, idempotency_key="s1", worker="w"
    )
    await store.runs.record_step(t, run.id, step_no=1, kind=StepKind.MODEL, idempotency_key="s1")
    await store.runs.steps(t, run.id)
    await store.runs.requeue_stale(t, stale_before=clock.now() + 1)
    await store.runs.unfinished(t)
    await store.runs.transition(t, run.id, RunStatus.CANCELLED)
    for call in (
        lambda: store.sessions.history(other, s.id),
        lambda: store.sessions.update(other, s.id, summary="y"),
        lambda: store.sessions.archive(other, s.id),
        lambda: store.runs.heartbeat(other, run.id, worker="w"),
        lambda: store.runs.transition(other, run.id, RunStatus.FAILED),
        lambda: store.runs.steps(other, run.id),
    ):
        with pytest.raises(NotFound):
            await call()
    await store.sessions.delete(t, s.id)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("fresh_postgres"))
    return sqlite_url


async def test_every_statement_is_scoped_by_tenant(url: str, clock: ManualClock) -> None:
    store = await open_store(url, now=clock.now)
    with audit(store) as sent:
        await exercise(store, clock)
    await store.close()
    touching = [s for s in sent if _USES.search(s)]
    assert len(touching) > 30
    assert [s for s in touching if unscoped(s)] == []


def test_the_audit_catches_an_unscoped_statement() -> None:
    dialect = sa.create_engine("sqlite://").dialect
    unscoped_sql = [
        sa.select(sessions).where(sessions.c.id == "s"),
        sa.update(runs).values(status="failed"),
        sa.delete(messages).where(messages.c.session_id == "s"),
        scoped_update(runs)
        .where(runs.c.id.in_(sa.select(runs.c.id).scalar_subquery()))
        .values(tenant_id="t", status="failed"),
    ]
    for stmt in unscoped_sql:
        assert unscoped(str(stmt.compile(dialect=dialect))), stmt


def test_scoped_statements_carry_the_tenant_predicate() -> None:
    for stmt in (
        scoped_select(sessions).where(sessions.c.id == "s"),
        scoped_update(sessions).values(summary=None),
        scoped_delete(sessions),
    ):
        assert "sessions.tenant_id = :tenant" in str(stmt.compile())


def test_scoped_statements_cannot_run_without_a_tenant() -> None:
    engine = sa.create_engine("sqlite://")
    sessions.metadata.create_all(engine)
    row = {"id": "s", "agent": "a", "created_at": 1.0, "updated_at": 1.0, "tenant_id": "intruder"}
    with engine.begin() as conn:
        Scope("acme").execute(conn, scoped_insert(sessions), row)
        Scope("acme").execute_many(conn, scoped_insert(sessions), [{**row, "id": "s2"}])
        stored = conn.execute(sa.select(sessions.c.tenant_id)).scalars().all()
        assert stored == ["acme", "acme"]  # the row's own tenant_id is ignored
        with pytest.raises(sa.exc.StatementError, match="tenant"):
            conn.execute(scoped_select(sessions))
        assert Scope("globex").execute(conn, scoped_select(sessions)).all() == []
    engine.dispose()


@pytest.mark.parametrize("tenant", ["", "x" * 65])
def test_a_tenant_must_be_named(tenant: str) -> None:
    with pytest.raises(ValueError):
        Scope(tenant)
