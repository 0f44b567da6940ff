"""``Prepared``: the agent turn's statements on the sqlite3 driver give what SQLAlchemy gives,
stay scoped, join the job's transaction, and report errors as SQLAlchemy's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from wayport.core.errors import Conflict, InvalidRequest
from wayport.core.session import NewMessage, NewStep, RunEnd, RunStatus, StepKind
from wayport.store import SqlStore, open_store
from wayport.store.prepared import Prepared
from wayport.store.schema import messages, sessions
from wayport.store.scope import Scope, scoped_insert, scoped_select
from wayport.testing import ManualClock

pytestmark = pytest.mark.anyio

_BY_ID = scoped_select(sessions).where(sessions.c.id == sa.bindparam("sid"))


@pytest.fixture
async def store(tmp_path: Path, clock: ManualClock) -> AsyncIterator[SqlStore]:
    opened = await open_store(f"sqlite:///{tmp_path}/wayport.db", now=clock.now)
    yield opened
    await opened.close()


async def test_rows_match_what_sqlalchemy_returns(store: SqlStore) -> None:
    s = await store.sessions.create("acme", agent="a", metadata={"k": [1, "x"]})
    prepared = Prepared(_BY_ID)
    scope = Scope("acme")

    def both(conn: sa.Connection) -> tuple[Any, Any]:
        fast = prepared.first(scope, conn, {"sid": s.id})
        slow = scope.execute(conn, _BY_ID, {"sid": s.id}).first()
        return fast, slow

    fast, slow = await store.db.read(both)
    assert fast is not None and slow is not None
    assert tuple(fast) == tuple(slow)
    assert fast.metadata == {"k": [1, "x"]}  # JSON decoded, as SQLAlchemy does
    assert fast._fields == tuple(slow._fields)
    other = await store.db.read(lambda conn: prepared.first(Scope("globex"), conn, {"sid": s.id}))
    assert other is None  # the tenant comes from the scope


async def test_a_statement_without_the_tenant_is_refused(store: SqlStore) -> None:
    unscoped = Prepared(sa.select(sessions).where(sessions.c.id == sa.bindparam("sid")))
    with pytest.raises(ValueError, match="not a scoped statement"):
        await store.db.read(lambda conn: unscoped.first(Scope("acme"), conn, {"sid": "s"}))


async def test_an_insert_takes_the_scope_tenant_whatever_the_row_says(store: SqlStore) -> None:
    insert = Prepared(scoped_insert(sessions))
    row = {"id": "s", "agent": "a", "created_at": 1.0, "updated_at": 1.0, "tenant_id": "intruder"}
    await store.db.write(lambda conn: insert.execute(Scope("acme"), conn, row))
    assert await store.sessions.get("acme", "s") is not None
    assert await store.sessions.get("intruder", "s") is None


async def test_statements_join_the_job_transaction(store: SqlStore) -> None:
    """A prepared statement first in a job still runs inside its transaction: the job fails,
    nothing of it stays."""
    s = await store.sessions.create("acme", agent="a")
    insert = Prepared(scoped_insert(messages))
    row = {"session_id": s.id, "seq": 1, "role": "user", "content": "hi", "created_at": 1.0}

    def job(conn: sa.Connection) -> None:
        insert.execute_many(Scope("acme"), conn, [row])
        raise RuntimeError("the job fails after its insert")

    with pytest.raises(RuntimeError):
        await store.db.write(job)
    assert await store.sessions.history("acme", s.id) == []


async def test_errors_arrive_as_sqlalchemy_reports_them(store: SqlStore) -> None:
    s = await store.sessions.create("acme", agent="a")
    insert = Prepared(scoped_insert(messages))
    row = {"session_id": s.id, "seq": 1, "role": "user", "content": "hi", "created_at": 1.0}
    await store.db.write(lambda conn: insert.execute_many(Scope("acme"), conn, [row]))
    with pytest.raises(Conflict):  # IntegrityError, translated by the store's boundary
        await store.db.write(lambda conn: insert.execute_many(Scope("acme"), conn, [row]))

    def unstorable(conn: sa.Connection) -> None:
        insert.execute(Scope("acme"), conn, {**row, "seq": 2, "content": object()})

    with pytest.raises(InvalidRequest, match="cannot be stored"):  # a 4xx, as on SQLAlchemy's
        await store.db.write(unstorable)


async def test_a_cursor_listener_sees_every_statement_of_a_turn(store: SqlStore) -> None:
    """With cursor listeners (tracing, the tenant audit) the statements take SQLAlchemy's
    path: the listener sees the same SQL the driver would have been sent."""
    s = await store.sessions.create("acme", agent="a")
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    run = await store.runs.create("acme", session_id=s.id, input={"m": 1}, worker="w")
    sa.event.listen(store.db.engine, "before_cursor_execute", record)
    try:
        await store.runs.checkpoint(
            "acme",
            run.id,
            inbound=[NewMessage(message={"role": "user", "content": "hi"}, idempotency_key="k")],
            steps=[
                NewStep(
                    step_no=1,
                    kind=StepKind.MODEL,
                    payload={"content": "ok"},
                    messages=[NewMessage(message={"role": "assistant", "content": "ok"})],
                    idempotency_key=f"{run.id}:1",
                )
            ],
            end=RunEnd(status=RunStatus.COMPLETED, output={"content": "ok"}),
            worker="w",
        )
    finally:
        sa.event.remove(store.db.engine, "before_cursor_execute", record)
    verbs = [statement.split()[0] for statement in sent]
    assert verbs == ["UPDATE", "SELECT", "UPDATE", "SELECT", "INSERT", "INSERT"]
    assert all("tenant_id" in statement for statement in sent)
    done = await store.runs.get("acme", run.id)
    assert done is not None and done.status is RunStatus.COMPLETED


async def test_a_turn_without_listeners_stores_the_same(store: SqlStore) -> None:
    s = await store.sessions.create("acme", agent="a")
    run = await store.runs.create("acme", session_id=s.id, input={"m": 1}, worker="w")
    saved = await store.runs.checkpoint(
        "acme",
        run.id,
        inbound=[NewMessage(message={"role": "user", "content": "hi"}, idempotency_key="k")],
        steps=[
            NewStep(
                step_no=1,
                kind=StepKind.MODEL,
                payload={"content": "ok", "usage": [5, 1]},
                messages=[NewMessage(message={"role": "assistant", "content": "ok"}, tokens=1)],
                idempotency_key=f"{run.id}:1",
            )
        ],
        end=RunEnd(status=RunStatus.COMPLETED, output={"content": "ok"}),
        worker="w",
    )
    assert saved.run.status is RunStatus.COMPLETED and saved.run.output == {"content": "ok"}
    assert [m.seq for m in saved.inbound] == [1]
    history = await store.sessions.history("acme", s.id)
    assert [(m.role, m.content, m.tokens) for m in history] == [
        ("user", "hi", None),
        ("assistant", "ok", 1),
    ]
    [step] = await store.runs.steps("acme", run.id)
    assert step.payload == {"content": "ok", "usage": [5, 1]}
    # the same checkpoint again (a retry): the run has ended, nothing is stored twice
    with pytest.raises(Conflict):
        await store.runs.checkpoint("acme", run.id, end=RunEnd(status=RunStatus.FAILED), worker="w")
    assert len(await store.sessions.history("acme", s.id)) == 2
