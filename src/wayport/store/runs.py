"""``RunStore`` on SQL: runs, their status machine, claims, heartbeats and step checkpoints.

    store = SqlRunStore(db)
    run = await store.create("default", session_id=s.id, input={"text": "hi"})
    [run] = await store.claim("default", worker="w1")
    await store.record_step("default", run.id, step_no=1, kind=StepKind.MODEL, payload=answer,
                            messages=[NewMessage(message=reply)], worker="w1")
    await store.transition("default", run.id, RunStatus.COMPLETED, output=answer)

Every status change is one guarded ``UPDATE … WHERE status IN (…) RETURNING``: the database
decides who wins a race, and the loser gets ``Conflict``. Claims pick the oldest queued runs
with ``FOR UPDATE SKIP LOCKED`` on Postgres, so replicas claiming at once never block on, or
double-claim, the same run; on SQLite the single writer already makes each claim exclusive.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from wayport.core.errors import Conflict, NotFound
from wayport.core.ids import new_id
from wayport.core.session import (
    UNFINISHED,
    UNSET,
    Json,
    NewMessage,
    Run,
    RunStatus,
    RunStep,
    StepKind,
    StepRecord,
    Unset,
    leaving_for,
)
from wayport.store.database import Database
from wayport.store.rows import message_from_row, run_from_row, step_from_row
from wayport.store.schema import messages as M
from wayport.store.schema import run_steps as ST
from wayport.store.schema import runs as R
from wayport.store.schema import sessions as S
from wayport.store.scope import Scope, scoped_insert, scoped_select, scoped_update
from wayport.store.sessions import append_messages

QUEUED, RUNNING = RunStatus.QUEUED.value, RunStatus.RUNNING.value


def _picked(candidates: sa.Select[Any]) -> sa.Select[Any]:
    """``SELECT id FROM`` the locked pick, evaluated once. As a plain ``IN (subquery)`` Postgres
    may rescan it while updating, and each rescan (``SKIP LOCKED``, rows re-checked after our
    own update) finds further rows: a claim of 1 would take several."""
    cte = candidates.cte("picked").prefix_with("MATERIALIZED", dialect="postgresql")
    return sa.select(cte.c.id)


# the pick selects from the table the UPDATE changes; an alias keeps SQLAlchemy from
# correlating it into the outer statement
_C = R.alias("candidate")
_BY_ID = R.c.id == param("rid")
_GET = scoped_select(R).where(_BY_ID)
_STATUS = scoped_select(R, R.c.status).where(_BY_ID)
_OWNER = scoped_select(R, R.c.session_id, R.c.status, R.c.claimed_by).where(_BY_ID)
_SESSION_EXISTS = scoped_select(S, S.c.id).where(S.c.id == param("sid"))
_INSERT = scoped_insert(R)
_UNFINISHED = (
    scoped_select(R)
    .where(R.c.status.in_([s.value for s in UNFINISHED]))
    .order_by(R.c.created_at, R.c.id)
    .limit(param("limit"))
)
_CLAIM = (
    scoped_update(R)
    .where(
        R.c.id.in_(
            _picked(
                scoped_select(_C, _C.c.id)
                .where(_C.c.status == QUEUED)
                .order_by(_C.c.created_at, _C.c.id)
                .limit(param("limit"))
                .with_for_update(skip_locked=True)
            )
        ),
        R.c.status == QUEUED,
    )
    .values(
        status=RUNNING,
        claimed_by=param("worker"),
        heartbeat_at=param("now"),
        updated_at=param("now"),
        attempt=R.c.attempt + 1,
    )
    .returning(R)
)
_HEARTBEAT = (
    scoped_update(R)
    .where(_BY_ID, R.c.status == RUNNING, R.c.claimed_by == param("worker"))
    .values(heartbeat_at=param("now"))
    .returning(R)
)
_REQUEUE = (
    scoped_update(R)
    .where(
        R.c.id.in_(
            _picked(
                scoped_select(_C, _C.c.id)
                .where(_C.c.status == RUNNING, _C.c.heartbeat_at < param("before"))
                .order_by(_C.c.heartbeat_at, _C.c.id)
                .limit(param("limit"))
                .with_for_update(skip_locked=True)
            )
        ),
        # checked again: a heartbeat may have landed since the pick's snapshot
        R.c.status == RUNNING,
        R.c.heartbeat_at < param("before"),
    )
    .values(status=QUEUED, claimed_by=None, heartbeat_at=None, updated_at=param("now"))
    .returning(R)
)
_STEP = scoped_select(ST).where(ST.c.run_id == param("rid"), ST.c.step_no == param("step_no"))
_STEPS = scoped_select(ST).where(ST.c.run_id == param("rid")).order_by(ST.c.step_no)
_INSERT_STEP = scoped_insert(ST)
_STEP_MESSAGES = (
    scoped_select(M)
    .where(
        M.c.session_id == param("sid"),
        M.c.run_id == param("rid"),
        M.c.step_no == param("step_no"),
    )
    .order_by(M.c.seq)
)


def _transition(output: bool, error: bool) -> sa.Update:
    # the target is never RUNNING (only claims enter it), so the claim always ends here
    values: dict[str, Any] = {
        "status": param("to"),
        "updated_at": param("now"),
        "claimed_by": None,
        "heartbeat_at": None,
    }
    if output:
        values["output"] = param("new_output", type_=R.c.output.type)
    if error:
        values["error"] = param("new_error", type_=R.c.error.type)
    return (
        scoped_update(R)
        .where(_BY_ID, R.c.status.in_(param("sources", expanding=True)))
        .values(values)
        .returning(R)
    )


_TRANSITIONS = {(o, e): _transition(o, e) for o in (False, True) for e in (False, True)}


class SqlRunStore:
    def __init__(self, db: Database, *, now: Callable[[], float] = time.time) -> None:
        self._db = db
        self._now = now

    async def create(
        self,
        tenant: str,
        *,
        session_id: str,
        input: Json = None,
        agent_version: str = "",
        run_id: str | None = None,
    ) -> Run:
        scope, t = Scope(tenant), self._now()
        run = Run(
            id=run_id or new_id("run"),
            tenant_id=tenant,
            session_id=session_id,
            status=RunStatus.QUEUED,
            input=input,
            created_at=t,
            updated_at=t,
            agent_version=agent_version,
        )
        row = {
            "id": run.id,
            "session_id": session_id,
            "status": QUEUED,
            "input": input,
            "created_at": t,
            "updated_at": t,
            "agent_version": agent_version,
        }

        def job(conn: sa.Connection) -> None:
            if scope.execute(conn, _SESSION_EXISTS, {"sid": session_id}).first() is None:
                raise NotFound(f"session {session_id} not found", param="session_id")
            scope.execute(conn, _INSERT, row)

        try:
            await self._db.write(job)
        except Conflict as exc:
            raise Conflict(f"run {run.id} already exists") from exc
        return run

    async def get(self, tenant: str, run_id: str) -> Run | None:
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> Run | None:
            row = scope.execute(conn, _GET, {"rid": run_id}).first()
            return None if row is None else run_from_row(row)

        return await self._db.read(job)

    async def transition(
        self,
        tenant: str,
        run_id: str,
        to: RunStatus,
        *,
        expected: Sequence[RunStatus] | None = None,
        output: Json | Unset = UNSET,
        error: str | Unset | None = UNSET,
    ) -> Run:
        sources = sorted(s.value for s in leaving_for(to, expected))
        stmt = _TRANSITIONS[output is not UNSET, error is not UNSET]
        params: dict[str, Any] = {"rid": run_id, "to": to.value, "now": self._now()}
        params["sources"] = sources
        if output is not UNSET:
            params["new_output"] = output
        if error is not UNSET:
            params["new_error"] = error
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> Run:
            row = scope.execute(conn, stmt, params).first()
            if row is None:
                status = _status(conn, scope, run_id)
                raise Conflict(
                    f"run {run_id} is {status}; it moves to {to.value} only from "
                    f"{', '.join(sources)}"
                )
            return run_from_row(row)

        return await self._db.write(job)

    async def claim(self, tenant: str, *, worker: str, limit: int = 1) -> list[Run]:
        scope = Scope(tenant)
        params = {"worker": worker, "now": self._now(), "limit": limit}
        return await self._db.write(
            lambda conn: _oldest_first(run_from_row(r) for r in scope.execute(conn, _CLAIM, params))
        )

    async def heartbeat(self, tenant: str, run_id: str, *, worker: str) -> Run:
        scope = Scope(tenant)
        params = {"rid": run_id, "worker": worker, "now": self._now()}

        def job(conn: sa.Connection) -> Run:
            row = scope.execute(conn, _HEARTBEAT, params).first()
            if row is None:
                status = _status(conn, scope, run_id)
                raise Conflict(f"run {run_id} is {status}, no longer held by {worker}")
            return run_from_row(row)

        return await self._db.write(job)

    async def requeue_stale(
        self, tenant: str, *, stale_before: float, limit: int = 100
    ) -> list[Run]:
        scope = Scope(tenant)
        params = {"before": stale_before, "limit": limit, "now": self._now()}
        return await self._db.write(
            lambda conn: _oldest_first(
                run_from_row(r) for r in scope.execute(conn, _REQUEUE, params)
            )
        )

    async def unfinished(self, tenant: str, *, limit: int = 100) -> list[Run]:
        scope = Scope(tenant)
        return await self._db.read(
            lambda conn: [
                run_from_row(r) for r in scope.execute(conn, _UNFINISHED, {"limit": limit})
            ]
        )

    async def record_step(
        self,
        tenant: str,
        run_id: str,
        *,
        step_no: int,
        kind: StepKind,
        payload: Json = None,
        messages: Sequence[NewMessage] = (),
        idempotency_key: str | None = None,
        worker: str | None = None,
    ) -> StepRecord:
        scope, t = Scope(tenant), self._now()
        step = RunStep(
            run_id=run_id,
            step_no=step_no,
            kind=kind,
            payload=payload,
            idempotency_key=idempotency_key,
            created_at=t,
        )
        row = {
            "run_id": run_id,
            "step_no": step_no,
            "kind": kind.value,
            "payload": payload,
            "idempotency_key": idempotency_key,
            "created_at": t,
        }

        def job(conn: sa.Connection) -> StepRecord:
            run = scope.execute(conn, _OWNER, {"rid": run_id}).first()
            if run is None:
                raise _missing(run_id)
            if worker is not None and (run.status != RUNNING or run.claimed_by != worker):
                raise Conflict(f"run {run_id} is {run.status}, no longer held by {worker}")
            done = scope.execute(conn, _STEP, {"rid": run_id, "step_no": step_no}).first()
            if done is not None:
                return _replay(conn, scope, run.session_id, step_from_row(done), step)
            stored = append_messages(
                conn, scope, run.session_id, messages, now=t, run_id=run_id, step_no=step_no
            )
            scope.execute(conn, _INSERT_STEP, row)
            return StepRecord(step=step, messages=tuple(stored))

        try:
            return await self._db.write(job)
        except Conflict as exc:
            if not isinstance(exc.__cause__, sa.exc.IntegrityError):
                raise
            # a concurrent recorder of the same step won the race for its key
            raise _recorded(run_id, step_no) from exc

    async def steps(self, tenant: str, run_id: str) -> list[RunStep]:
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> list[RunStep]:
            steps = [step_from_row(r) for r in scope.execute(conn, _STEPS, {"rid": run_id})]
            if not steps:
                _status(conn, scope, run_id)  # NotFound for a missing run
            return steps

        return await self._db.read(job)


def _status(conn: sa.Connection, scope: Scope, run_id: str) -> str:
    status = scope.execute(conn, _STATUS, {"rid": run_id}).scalar()
    if status is None:
        raise _missing(run_id)
    return str(status)


def _replay(
    conn: sa.Connection, scope: Scope, session_id: str, done: RunStep, asked: RunStep
) -> StepRecord:
    """A step number recorded before: the same step retried (same idempotency key) gets its
    first record back, anything else is a second, different step under one number."""
    if asked.idempotency_key is None or done.idempotency_key != asked.idempotency_key:
        raise _recorded(asked.run_id, asked.step_no)
    params = {"sid": session_id, "rid": done.run_id, "step_no": done.step_no}
    rows = scope.execute(conn, _STEP_MESSAGES, params)
    return StepRecord(step=done, messages=tuple(message_from_row(r) for r in rows), replayed=True)


def _recorded(run_id: str, step_no: int) -> Conflict:
    return Conflict(f"step {step_no} of run {run_id} is already recorded")


def _missing(run_id: str) -> NotFound:
    return NotFound(f"run {run_id} not found", param="run_id")


def _oldest_first(runs: Iterable[Run]) -> list[Run]:
    # RETURNING gives no order; claimers expect the queue's
    return sorted(runs, key=lambda r: (r.created_at, r.id))
