"""``RunStore.checkpoint`` on SQL: what a run stores at one point of its progress, as one job
(one writer round trip, one commit, shared by group commit with whatever else is queued).

A turn of an agent costs two writes this way: the run row (holding the inbound message) when it
is submitted, and one checkpoint when it is answered: the inbound message, the model step, the
assistant's message and the run's end together. The statements of a checkpoint::

    UPDATE runs … WHERE status = 'running' [AND claimed_by = :worker] RETURNING *  -- the guard
    SELECT … FROM run_steps WHERE run_id = … AND step_no = …                    -- per step
    UPDATE sessions SET message_count = message_count + :n … RETURNING          -- one append
    SELECT … FROM messages WHERE idempotency_key IN (…)                         -- keyed only
    INSERT INTO messages …                                                      -- executemany
    INSERT INTO run_steps …                                                     -- per step

The guard comes first: it checks the claim and, on Postgres, locks the run row for the rest of
the transaction, so a sweeper cannot requeue the run between the check and the writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from wayport.core.errors import Conflict, NotFound
from wayport.core.redaction import redact
from wayport.core.session import (
    Checkpoint,
    NewMessage,
    NewStep,
    RunEnd,
    RunStatus,
    RunStep,
    StepRecord,
    StoredMessage,
)
from wayport.store.prepared import Prepared
from wayport.store.rows import message_from_row, run_from_row, step_from_row
from wayport.store.schema import messages as M
from wayport.store.schema import run_steps as ST
from wayport.store.schema import runs as R
from wayport.store.scope import Scope, scoped_insert, scoped_select, scoped_update
from wayport.store.sealing import Sealer
from wayport.store.sessions import append_messages

RUNNING = RunStatus.RUNNING.value
_ENDS = frozenset(s for s in RunStatus if s is not RunStatus.RUNNING)


def _guard(end: bool, worker: bool, wait: bool) -> sa.Update:
    where = [R.c.id == param("rid"), R.c.status == RUNNING]
    if worker:
        where.append(R.c.claimed_by == param("worker"))
    values: dict[str, Any] = {
        "updated_at": param("now"),
        "started_at": sa.func.coalesce(R.c.started_at, param("started", type_=sa.Double())),
    }
    if wait:  # waiting for the client: its run_timeout starts again once it answers
        values["started_at"] = None
    if end:
        values.update(
            status=param("to"),
            output=param("new_output", type_=R.c.output.type),
            error=param("new_error", type_=R.c.error.type),
            claimed_by=None,
            heartbeat_at=None,
        )
    return scoped_update(R).where(*where).values(values).returning(R)


# built once, run on the driver (``wayport.store.prepared``)
_GUARDS = {
    (e, w, wait): Prepared(_guard(e, w, wait))
    for e in (False, True)
    for w in (False, True)
    for wait in (False, True)
    if e or not wait
}
_STATUS = scoped_select(R, R.c.status, R.c.claimed_by).where(R.c.id == param("rid"))
_STEP = Prepared(
    scoped_select(ST).where(ST.c.run_id == param("rid"), ST.c.step_no == param("step_no"))
)
_INSERT_STEP = Prepared(scoped_insert(ST))
_STEP_MESSAGES = (
    scoped_select(M)
    .where(
        M.c.session_id == param("sid"),
        M.c.run_id == param("rid"),
        M.c.step_no == param("step_no"),
    )
    .order_by(M.c.seq)
)


class CheckpointJob:
    """One checkpoint, prepared on the event loop (sealing, parameters), run by the writer."""

    __slots__ = ("_end", "_guard", "_inbound", "_params", "_scope", "_sealer", "_steps", "_t")

    def __init__(
        self,
        tenant: str,
        run_id: str,
        *,
        inbound: Sequence[NewMessage],
        steps: Sequence[NewStep],
        end: RunEnd | None,
        started_at: float | None,
        worker: str | None,
        now: float,
        sealer: Sealer,
    ) -> None:
        if end is not None and end.status not in _ENDS:
            raise ValueError(f"a checkpoint cannot end a run as {end.status.value!r}")
        self._scope = Scope(tenant)
        self._sealer = sealer
        self._t = now
        self._inbound = inbound
        self._steps = steps
        self._end = end
        wait = end is not None and end.status.waiting
        self._guard = _GUARDS[end is not None, worker is not None, wait]
        params: dict[str, Any] = {"rid": run_id, "now": now, "started": started_at}
        if worker is not None:
            params["worker"] = worker
        if end is not None:
            params["to"] = end.status.value
            params["new_output"] = sealer.seal(tenant, "runs.output", end.output)
            # error text often quotes an upstream's answer: never store a credential
            params["new_error"] = redact(end.error) if end.error else end.error
        self._params = params

    def __call__(self, conn: sa.Connection) -> Checkpoint:
        scope, sealer, t, run_id = self._scope, self._sealer, self._t, self._params["rid"]
        row = self._guard.first(scope, conn, self._params)
        if row is None:
            raise _not_running(conn, scope, run_id, self._params.get("worker"))
        run = run_from_row(row, sealer)
        records: list[StepRecord | None] = []
        items: list[NewMessage] = list(self._inbound)
        tags: list[tuple[str | None, int | None]] = [(None, None)] * len(items)
        fresh: list[tuple[NewStep, int]] = []  # (step, where its messages start in items)
        for step in self._steps:
            params = {"rid": run_id, "step_no": step.step_no}
            done = _STEP.first(scope, conn, params)
            if done is not None:
                records.append(_replay(conn, scope, run.session_id, step, done, sealer))
                continue
            records.append(None)
            fresh.append((step, len(items)))
            items.extend(step.messages)
            tags.extend([(run_id, step.step_no)] * len(step.messages))
        stored: list[StoredMessage] = []
        if items:
            stored = append_messages(
                conn, scope, run.session_id, items, now=t, sealer=sealer, tags=tags
            )
        step_rows: list[dict[str, Any]] = []
        made: list[StepRecord] = []
        for step, start in fresh:
            step_rows.append(
                {
                    "run_id": run_id,
                    "step_no": step.step_no,
                    "kind": step.kind.value,
                    "payload": sealer.seal(scope.tenant, "run_steps.payload", step.payload),
                    "idempotency_key": step.idempotency_key,
                    "created_at": t,
                }
            )
            record = RunStep(
                run_id=run_id,
                step_no=step.step_no,
                kind=step.kind,
                payload=step.payload,
                idempotency_key=step.idempotency_key,
                created_at=t,
            )
            made.append(
                StepRecord(step=record, messages=tuple(stored[start : start + len(step.messages)]))
            )
        if step_rows:
            _INSERT_STEP.execute_many(scope, conn, step_rows)
        it = iter(made)
        return Checkpoint(
            run=run,
            inbound=tuple(stored[: len(self._inbound)]),
            steps=tuple(r if r is not None else next(it) for r in records),
        )


def _replay(
    conn: sa.Connection,
    scope: Scope,
    session_id: str,
    asked: NewStep,
    done_row: sa.Row[Any],
    sealer: Sealer,
) -> StepRecord:
    """A step number recorded before: the same step retried (same key) gets its first record
    back; anything else is a second, different step under one number."""
    done = step_from_row(done_row, sealer)
    if asked.idempotency_key is None or done.idempotency_key != asked.idempotency_key:
        raise Conflict(f"step {asked.step_no} of run {done.run_id} is already recorded")
    params = {"sid": session_id, "rid": done.run_id, "step_no": done.step_no}
    rows = scope.execute(conn, _STEP_MESSAGES, params)
    return StepRecord(
        step=done, messages=tuple(message_from_row(r, sealer) for r in rows), replayed=True
    )


def _not_running(
    conn: sa.Connection, scope: Scope, run_id: str, worker: str | None
) -> NotFound | Conflict:
    row = scope.execute(conn, _STATUS, {"rid": run_id}).first()
    if row is None:
        return NotFound(f"run {run_id} not found", param="run_id")
    if worker is not None and row.status == RUNNING:
        return Conflict(f"run {run_id} is held by another worker, no longer by {worker}")
    return Conflict(f"run {run_id} is {row.status}, not running")
