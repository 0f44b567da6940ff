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

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from wayport.core.agent import AgentSpec
from wayport.core.errors import Conflict, NotFound
from wayport.core.ids import new_id
from wayport.core.redaction import redact
from wayport.core.session import (
    UNFINISHED,
    UNSET,
    Checkpoint,
    Json,
    NewMessage,
    NewStep,
    Run,
    RunEnd,
    RunStatus,
    RunStep,
    StepKind,
    StepRecord,
    Unset,
    leaving_for,
)
from wayport.store import agent_versions
from wayport.store.checkpoints import CheckpointJob
from wayport.store.database import Database
from wayport.store.prepared import Prepared
from wayport.store.rows import message_from_row, run_from_row, step_from_row
from wayport.store.schema import messages as M
from wayport.store.schema import run_steps as ST
from wayport.store.schema import runs as R
from wayport.store.schema import sessions as S
from wayport.store.scope import Scope, scoped_insert, scoped_select, scoped_update
from wayport.store.sealing import NO_SEALING, Sealer
from wayport.store.sessions import append_messages

QUEUED, RUNNING = RunStatus.QUEUED.value, RunStatus.RUNNING.value
_UNCLAIMED: dict[str, Any] = {
    "status": QUEUED,
    "claimed_by": None,
    "heartbeat_at": None,
    "attempt": 0,
    "started_at": None,
}


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
# an agent turn's statements (``wayport.store.prepared``)
_SESSION_FOUND = Prepared(_SESSION_EXISTS)
_CREATE = Prepared(_INSERT)
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
# BEGIN scale-out: claims that keep a session's runs in order across replicas
_O = R.alias("other")
_SESSION_BUSY = sa.exists().where(
    _O.c.tenant_id == _C.c.tenant_id,
    _O.c.session_id == _C.c.session_id,
    _O.c.id != _C.c.id,
    sa.or_(
        # a run paused for approval keeps its session, as ``Lanes.hold`` does in-process
        _O.c.status.in_([RUNNING, RunStatus.REQUIRES_APPROVAL.value]),
        sa.and_(
            _O.c.status == QUEUED,
            sa.or_(
                _O.c.created_at < _C.c.created_at,
                sa.and_(_O.c.created_at == _C.c.created_at, _O.c.id < _C.c.id),
            ),
        ),
    ),
)
#: ``_CLAIM`` for replicas sharing the database: only the oldest queued run of a session
#: whose other runs are not running nor paused for approval, so one replica at a time
#: executes a session, in order.
#: Two claimers racing see the rival's pick as still queued (and older), so neither skips
#: ahead of it.
_CLAIM_EXCLUSIVE = (
    scoped_update(R)
    .where(
        R.c.id.in_(
            _picked(
                scoped_select(_C, _C.c.id)
                .where(_C.c.status == QUEUED, ~_SESSION_BUSY)
                .order_by(_C.c.created_at, _C.c.id)
                .limit(param("limit"))
                .with_for_update(skip_locked=True, of=_C)
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
#: a run created claimed on a shared database: the session's row is locked (creations for
#: one session take turns), then any other unfinished run of it makes the new one queue
_SESSION_LOCK = _SESSION_EXISTS.with_for_update()
_SESSION_UNFINISHED = (
    scoped_select(R, R.c.id)
    .where(
        R.c.session_id == param("sid"),
        R.c.status.in_(sorted(s.value for s in UNFINISHED)),
    )
    .limit(1)
)
# END scale-out
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
    def __init__(
        self, db: Database, *, now: Callable[[], float] = time.time, sealer: Sealer = NO_SEALING
    ) -> None:
        self._db = db
        self._now = now
        self._sealer = sealer  #: encryption at rest (``wayport.store.sealing``)
        #: scale-out: replicas share the database, so a claim skips the runs of sessions
        #: busy elsewhere (and newer runs of a session behind an older queued one), and a run
        #: created claimed (``create(worker=…)``) is created queued instead when its session
        #: has another unfinished run (creations lock the session's row, so they take turns)
        self.exclusive_sessions = False

    async def create(
        self,
        tenant: str,
        *,
        session_id: str,
        input: Json = None,
        agent_version: str = "",
        run_id: str | None = None,
        worker: str | None = None,
    ) -> Run:
        scope, t = Scope(tenant), self._now()
        queued = run = Run(
            id=run_id or new_id("run"),
            tenant_id=tenant,
            session_id=session_id,
            status=RunStatus.QUEUED,
            input=input,
            created_at=t,
            updated_at=t,
            agent_version=agent_version,
        )
        row: dict[str, Any] = {
            "id": run.id,
            "session_id": session_id,
            "status": QUEUED,
            "input": self._sealer.seal(tenant, "runs.input", input),
            "created_at": t,
            "updated_at": t,
            "agent_version": agent_version,
        }
        if worker is not None:  # created claimed: the caller executes it now (agent turns)
            run = Run(  # built whole: cheaper than ``replace`` on the turn's path
                id=run.id,
                tenant_id=tenant,
                session_id=session_id,
                status=RunStatus.RUNNING,
                input=input,
                created_at=t,
                updated_at=t,
                agent_version=agent_version,
                claimed_by=worker,
                heartbeat_at=t,
                attempt=1,
                started_at=t,
            )
            row.update(status=RUNNING, claimed_by=worker, heartbeat_at=t, attempt=1, started_at=t)

        exclusive = self.exclusive_sessions

        def job(conn: sa.Connection) -> Run:
            if exclusive:
                found = scope.execute(conn, _SESSION_LOCK, {"sid": session_id}).first()
            else:
                found = _SESSION_FOUND.first(scope, conn, {"sid": session_id})
            if found is None:
                raise NotFound(f"session {session_id} not found", param="session_id")
            if (
                exclusive
                and worker is not None
                and scope.execute(conn, _SESSION_UNFINISHED, {"sid": session_id}).first()
            ):
                # scale-out: the session is busy (maybe on another replica): queue behind it
                scope.execute(conn, _INSERT, {**row, **_UNCLAIMED})
                return queued
            _CREATE.execute(scope, conn, row)
            return run

        try:
            return await self._db.write(job)
        except Conflict as exc:
            raise Conflict(f"run {run.id} already exists") from exc

    async def get(self, tenant: str, run_id: str) -> Run | None:
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> Run | None:
            row = scope.execute(conn, _GET, {"rid": run_id}).first()
            return None if row is None else run_from_row(row, self._sealer)

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
            params["new_output"] = self._sealer.seal(tenant, "runs.output", output)
        if error is not UNSET:
            # error text often quotes an upstream's answer: never store a credential (security)
            params["new_error"] = redact(error) if error else error
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> Run:
            row = scope.execute(conn, stmt, params).first()
            if row is None:
                status = _status(conn, scope, run_id)
                raise Conflict(
                    f"run {run_id} is {status}; it moves to {to.value} only from "
                    f"{', '.join(sources)}"
                )
            return run_from_row(row, self._sealer)

        return await self._db.write(job)

    async def claim(self, tenant: str, *, worker: str, limit: int = 1) -> list[Run]:
        scope = Scope(tenant)
        params = {"worker": worker, "now": self._now(), "limit": limit}
        stmt = _CLAIM_EXCLUSIVE if self.exclusive_sessions else _CLAIM
        return await self._db.write(
            lambda conn: _oldest_first(
                run_from_row(r, self._sealer) for r in scope.execute(conn, stmt, params)
            )
        )

    async def heartbeat(self, tenant: str, run_id: str, *, worker: str) -> Run:
        scope = Scope(tenant)
        params = {"rid": run_id, "worker": worker, "now": self._now()}

        def job(conn: sa.Connection) -> Run:
            row = scope.execute(conn, _HEARTBEAT, params).first()
            if row is None:
                status = _status(conn, scope, run_id)
                raise Conflict(f"run {run_id} is {status}, no longer held by {worker}")
            return run_from_row(row, self._sealer)

        return await self._db.write(job)

    async def requeue_stale(
        self, tenant: str, *, stale_before: float, limit: int = 100
    ) -> list[Run]:
        scope = Scope(tenant)
        params = {"before": stale_before, "limit": limit, "now": self._now()}
        return await self._db.write(
            lambda conn: _oldest_first(
                run_from_row(r, self._sealer) for r in scope.execute(conn, _REQUEUE, params)
            )
        )

    async def unfinished(self, tenant: str, *, limit: int = 100) -> list[Run]:
        scope = Scope(tenant)
        return await self._db.read(
            lambda conn: [
                run_from_row(r, self._sealer)
                for r in scope.execute(conn, _UNFINISHED, {"limit": limit})
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
            "payload": self._sealer.seal(tenant, "run_steps.payload", payload),
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
                done_step = step_from_row(done, self._sealer)
                return _replay(conn, scope, run.session_id, done_step, step, self._sealer)
            stored = append_messages(
                conn,
                scope,
                run.session_id,
                messages,
                now=t,
                run_id=run_id,
                step_no=step_no,
                sealer=self._sealer,
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
            rows = scope.execute(conn, _STEPS, {"rid": run_id})
            steps = [step_from_row(r, self._sealer) for r in rows]
            if not steps:
                _status(conn, scope, run_id)  # NotFound for a missing run
            return steps

        return await self._db.read(job)

    # BEGIN agent turns: batched checkpoints (store/checkpoints.py), pinned agent versions
    async def checkpoint(
        self,
        tenant: str,
        run_id: str,
        *,
        inbound: Sequence[NewMessage] = (),
        steps: Sequence[NewStep] = (),
        end: RunEnd | None = None,
        started_at: float | None = None,
        worker: str | None = None,
    ) -> Checkpoint:
        job = CheckpointJob(
            tenant,
            run_id,
            inbound=inbound,
            steps=steps,
            end=end,
            started_at=started_at,
            worker=worker,
            now=self._now(),
            sealer=self._sealer,
        )
        try:
            return await self._db.write(job)
        except Conflict as exc:
            if not isinstance(exc.__cause__, sa.exc.IntegrityError):
                raise
            raise Conflict(f"a step of run {run_id} is already recorded") from exc

    async def pin_agent(self, tenant: str, spec: AgentSpec) -> None:
        # pinned concurrently by another process: the same content under one hash
        with contextlib.suppress(Conflict):
            await self._db.write(agent_versions.pin_job(tenant, spec, self._now()))

    async def pinned_agent(self, tenant: str, agent: str, version: str) -> AgentSpec | None:
        return await self._db.read(agent_versions.get_job(tenant, agent, version))

    # END agent turns

    # BEGIN releases: failover (rare: the statement is built per call)
    async def set_agent_version(
        self, tenant: str, run_id: str, version: str, *, worker: str | None = None
    ) -> Run:
        held = [_BY_ID, R.c.status == RUNNING]
        if worker is not None:
            held.append(R.c.claimed_by == param("worker"))
        stmt = (
            scoped_update(R)
            .where(*held)
            .values(agent_version=param("version"), updated_at=param("now"))
            .returning(R)
        )
        params = {"rid": run_id, "version": version, "worker": worker, "now": self._now()}
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> Run:
            found = scope.execute(conn, stmt, params).first()
            if found is None:
                status = _status(conn, scope, run_id)
                raise Conflict(f"run {run_id} is {status}, not running for {worker}")
            return run_from_row(found, self._sealer)

        return await self._db.write(job)

    # END releases: failover


def _status(conn: sa.Connection, scope: Scope, run_id: str) -> str:
    status = scope.execute(conn, _STATUS, {"rid": run_id}).scalar()
    if status is None:
        raise _missing(run_id)
    return str(status)


def _replay(
    conn: sa.Connection,
    scope: Scope,
    session_id: str,
    done: RunStep,
    asked: RunStep,
    sealer: Sealer = NO_SEALING,
) -> StepRecord:
    """A step number recorded before: the same step retried (same idempotency key) gets its
    first record back, anything else is a second, different step under one number."""
    if asked.idempotency_key is None or done.idempotency_key != asked.idempotency_key:
        raise _recorded(asked.run_id, asked.step_no)
    params = {"sid": session_id, "rid": done.run_id, "step_no": done.step_no}
    rows = scope.execute(conn, _STEP_MESSAGES, params)
    stored = tuple(message_from_row(r, sealer) for r in rows)
    return StepRecord(step=done, messages=stored, replayed=True)


def _recorded(run_id: str, step_no: int) -> Conflict:
    return Conflict(f"step {step_no} of run {run_id} is already recorded")


def _missing(run_id: str) -> NotFound:
    return NotFound(f"run {run_id} not found", param="run_id")


def _oldest_first(runs: Iterable[Run]) -> list[Run]:
    # RETURNING gives no order; claimers expect the queue's
    return sorted(runs, key=lambda r: (r.created_at, r.id))
