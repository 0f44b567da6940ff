"""``WorkflowStore`` on SQL: definitions by version, runs with claims and heartbeats, and step
checkpoints, on SQLite or Postgres.

    store = SqlWorkflowStore(db)
    run, created = await store.create_run("default", run_id=rid, workflow="triage",
                                          version=d.version, definition=d.source, input={...})
    [run] = await store.claim("default", worker="w1", now=t)
    await store.save_steps("default", run.id, [row], worker="w1")   # one transaction
    await store.finish("default", run.id, WorkflowStatus.COMPLETED, worker="w1", output=out)

Every write that belongs to a claimed run checks the claim in the same transaction
(``claimed_by = worker AND status = running``), so a process that lost its run (swept as
stale, or killed and restarted) can never checkpoint over its successor: it gets ``Conflict``.
Claims pick runs with ``FOR UPDATE SKIP LOCKED`` on Postgres, as ``store/runs.py`` does, so
replicas sharing the database never double-claim. With a ``sealer`` holding keys, run inputs,
outputs and errors and step outputs and errors (tool results) are sealed at rest
(``wayport.store.sealing``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from wayport.core.errors import Conflict, NotFound
from wayport.core.workflow_plan import StepStatus
from wayport.core.workflow_run import StepRow, WorkflowRun, WorkflowStatus
from wayport.store._workflow_sql import (
    _CLAIM,
    _FINISH,
    _GET,
    _GET_DEF,
    _HEARTBEAT,
    _HELD,
    _INSERT,
    _INSERT_DEF,
    _INSERT_STEP,
    _LIST,
    _NUDGE,
    _PARK,
    _REQUEUE,
    _RESOLVE_STEP,
    _STEP,
    _STEP_PATHS,
    _STEPS,
    _TOUCH,
    _UPDATE_STEP,
    QUEUED,
    RUN_ERROR,
    RUN_INPUT,
    RUN_OUTPUT,
    RUNNING,
    STEP_ERROR,
    STEP_OUTPUT,
    UNFINISHED,
    run_from_row,
    step_from_row,
)
from wayport.store.database import Database
from wayport.store.engine import open_database
from wayport.store.schema import workflow_runs as R
from wayport.store.scope import Scope
from wayport.store.sealing import NO_SEALING, Sealer


def _check_held(conn: sa.Connection, scope: Scope, run_id: str, worker: str | None) -> None:
    held = scope.execute(conn, _HELD, {"rid": run_id}).first()
    if held is None:
        raise NotFound(f"workflow run {run_id} not found", code="workflow_run_not_found")
    if worker is not None and (held.status != RUNNING or held.claimed_by != worker):
        raise Conflict(f"workflow run {run_id} is {held.status}, no longer held by {worker}")


class SqlWorkflowStore:
    def __init__(
        self, db: Database, *, now: Callable[[], float] = time.time, sealer: Sealer = NO_SEALING
    ) -> None:
        self._db = db
        self._now = now
        self._sealer = sealer  #: encryption at rest (``wayport.store.sealing``)

    # ------------------------------------------------------------------ definitions and runs

    async def definition(self, tenant: str, name: str, version: str) -> Mapping[str, Any] | None:
        scope = Scope(tenant)
        params = {"name": name, "version": version}
        return await self._db.read(lambda conn: scope.execute(conn, _GET_DEF, params).scalar())

    async def create_run(
        self,
        tenant: str,
        *,
        run_id: str,
        workflow: str,
        version: str,
        definition: Mapping[str, Any],
        input: Any = None,
        trigger: str = "api",
        parent_run_id: str | None = None,
        parent_step: str | None = None,
    ) -> tuple[WorkflowRun, bool]:
        """Store the definition (once per version) and a queued run, in one transaction. A run
        id that exists already returns that run and ``False``: triggers derive ids from their
        event, so a repeated event starts nothing new."""
        scope, t, sealer = Scope(tenant), self._now(), self._sealer
        row = {
            "id": run_id,
            "workflow": workflow,
            "version": version,
            "status": QUEUED,
            "input": sealer.seal(tenant, RUN_INPUT, input),
            "trigger": trigger,
            "parent_run_id": parent_run_id,
            "parent_step": parent_step,
            "revision": 0,
            "attempt": 0,
            "created_at": t,
            "updated_at": t,
        }

        def job(conn: sa.Connection) -> tuple[WorkflowRun, bool]:
            earlier = scope.execute(conn, _GET, {"rid": run_id}).first()
            if earlier is not None:
                return run_from_row(earlier, sealer), False
            params = {"name": workflow, "version": version}
            if scope.execute(conn, _GET_DEF, params).first() is None:
                scope.execute(
                    conn, _INSERT_DEF, {**params, "definition": dict(definition), "created_at": t}
                )
            scope.execute(conn, _INSERT, row)
            return run_from_row(scope.execute(conn, _GET, {"rid": run_id}).one(), sealer), True

        return await self._db.write(job)

    async def get(self, tenant: str, run_id: str) -> WorkflowRun | None:
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> WorkflowRun | None:
            row = scope.execute(conn, _GET, {"rid": run_id}).first()
            return None if row is None else run_from_row(row, self._sealer)

        return await self._db.read(job)

    async def list_runs(
        self,
        tenant: str,
        *,
        workflow: str | None = None,
        status: WorkflowStatus | None = None,
        limit: int = 50,
    ) -> list[WorkflowRun]:
        scope = Scope(tenant)
        stmt = _LIST
        if workflow is not None:
            stmt = stmt.where(R.c.workflow == param("workflow"))
        if status is not None:
            stmt = stmt.where(R.c.status == param("status"))
        params = {
            "limit": limit,
            "workflow": workflow,
            "status": None if status is None else status.value,
        }
        params = {k: v for k, v in params.items() if v is not None}
        return await self._db.read(
            lambda conn: [run_from_row(r, self._sealer) for r in scope.execute(conn, stmt, params)]
        )

    async def steps(self, tenant: str, run_id: str) -> list[StepRow]:
        scope = Scope(tenant)
        return await self._db.read(
            lambda conn: [
                step_from_row(r, self._sealer) for r in scope.execute(conn, _STEPS, {"rid": run_id})
            ]
        )

    # ------------------------------------------------------------------ claims

    async def claim(self, tenant: str, *, worker: str, limit: int = 1) -> list[WorkflowRun]:
        """Take up to ``limit`` runs that are queued, or waiting with ``wake_at`` passed."""
        scope = Scope(tenant)
        params = {"worker": worker, "now": self._now(), "limit": limit}
        return await self._db.write(
            lambda conn: sorted(
                (run_from_row(r, self._sealer) for r in scope.execute(conn, _CLAIM, params)),
                key=lambda r: (r.created_at, r.id),
            )
        )

    async def heartbeat(self, tenant: str, run_ids: Sequence[str], *, worker: str) -> set[str]:
        """Refresh the claims; returns the runs still held."""
        if not run_ids:
            return set()
        scope = Scope(tenant)
        params = {"rids": list(run_ids), "worker": worker, "now": self._now()}
        return await self._db.write(
            lambda conn: {r[0] for r in scope.execute(conn, _HEARTBEAT, params)}
        )

    async def requeue_stale(self, tenant: str, *, stale_before: float) -> list[str]:
        """Runs held by a process that stopped heartbeating go back to the queue."""
        scope = Scope(tenant)
        params = {"before": stale_before, "now": self._now()}
        return await self._db.write(
            lambda conn: [r[0] for r in scope.execute(conn, _REQUEUE, params)]
        )

    async def active_tenants(self) -> list[str]:
        """The tenants with unfinished runs, for the engine to sweep and claim after a restart.
        The one query not scoped to a tenant: it reads tenant ids, never a tenant's data."""
        stmt = sa.select(R.c.tenant_id).where(R.c.status.in_(UNFINISHED)).distinct()
        return await self._db.read(lambda conn: sorted(r[0] for r in conn.execute(stmt)))

    # ------------------------------------------------------------------ checkpoints

    async def save_steps(
        self, tenant: str, run_id: str, rows: Sequence[StepRow], *, worker: str | None
    ) -> None:
        """Write step states (insert or replace) in one transaction, if ``worker`` still holds
        the run: the checkpoint of a step's output is all or nothing."""
        if not rows:
            return
        scope, t = Scope(tenant), self._now()
        sealed = [(r.path, _fields(r, tenant, self._sealer)) for r in rows]

        def job(conn: sa.Connection) -> None:
            _check_held(conn, scope, run_id, worker)
            paths = [r.path for r in rows]
            existing = {
                p[0] for p in scope.execute(conn, _STEP_PATHS, {"rid": run_id, "paths": paths})
            }
            inserts = [
                {"run_id": run_id, "path": path, **fields}
                for path, fields in sealed
                if path not in existing
            ]
            updates = [
                {"b_run": run_id, "b_path": path, **{f"v_{k}": v for k, v in fields.items()}}
                for path, fields in sealed
                if path in existing
            ]
            if inserts:
                scope.execute_many(conn, _INSERT_STEP, inserts)
            if updates:
                scope.execute_many(conn, _UPDATE_STEP, updates)
            scope.execute(conn, _TOUCH, {"rid": run_id, "now": t})

        await self._db.write(job)

    async def park(
        self, tenant: str, run_id: str, *, worker: str, revision: int, wake_at: float | None
    ) -> bool:
        """``running -> waiting`` unless a step was resolved from outside since ``revision``
        was read (then ``False``: reload and go on)."""
        scope = Scope(tenant)
        params = {
            "rid": run_id,
            "worker": worker,
            "expect_rev": revision,
            "new_wake": wake_at,
            "now": self._now(),
        }
        return await self._db.write(
            lambda conn: scope.execute(conn, _PARK, params).first() is not None
        )

    async def finish(
        self,
        tenant: str,
        run_id: str,
        to: WorkflowStatus,
        *,
        worker: str | None,
        output: Any = None,
        error: str | None = None,
    ) -> WorkflowRun:
        """End a run: from ``running`` (held by ``worker``), or with ``worker=None`` (a
        cancellation) from any unfinished status."""
        scope, sealer = Scope(tenant), self._sealer
        sources = [RUNNING] if worker is not None else list(UNFINISHED)
        params = {
            "rid": run_id,
            "to": to.value,
            "sources": sources,
            "new_output": sealer.seal(tenant, RUN_OUTPUT, output),
            "new_error": sealer.seal_text(tenant, RUN_ERROR, error),
            "now": self._now(),
        }

        def job(conn: sa.Connection) -> WorkflowRun:
            _check_held(conn, scope, run_id, worker)
            row = scope.execute(conn, _FINISH, params).first()
            if row is None:
                raise Conflict(f"workflow run {run_id} is already finished")
            return run_from_row(row, sealer)

        return await self._db.write(job)

    async def resolve_step(
        self,
        tenant: str,
        run_id: str,
        path: str,
        *,
        status: StepStatus,
        output: Any = None,
        error: str | None = None,
    ) -> WorkflowRun:
        """Settle a ``waiting`` step from outside (an approval, a finished sub-workflow) and
        wake its run, in one transaction. ``Conflict`` when the step is not waiting."""
        scope, t, sealer = Scope(tenant), self._now(), self._sealer
        params = {
            "rid": run_id,
            "spath": path,
            "to": status.value,
            "new_output": sealer.seal(tenant, STEP_OUTPUT, output),
            "new_error": sealer.seal_text(tenant, STEP_ERROR, error),
            "now": t,
        }

        def job(conn: sa.Connection) -> WorkflowRun:
            if scope.execute(conn, _RESOLVE_STEP, params).first() is None:
                step = scope.execute(conn, _STEP, {"rid": run_id, "path": path}).first()
                if step is None:
                    _check_held(conn, scope, run_id, None)
                    raise NotFound(f"workflow run {run_id} has no step {path!r} waiting")
                raise Conflict(f"step {path} of workflow run {run_id} is {step.status}")
            return run_from_row(
                scope.execute(conn, _NUDGE, {"rid": run_id, "now": t}).one(), sealer
            )

        return await self._db.write(job)


def _fields(r: StepRow, tenant: str, sealer: Sealer) -> dict[str, Any]:
    output, error = r.output, r.error
    if sealer.enabled:
        output = sealer.seal(tenant, STEP_OUTPUT, output)
        error = sealer.seal_text(tenant, STEP_ERROR, error)
    return {
        "step_id": r.step_id,
        "item_index": r.item_index,
        "kind": r.kind,
        "status": r.status.value,
        "output": output,
        "error": error,
        "attempt": r.attempt,
        "wake_at": r.wake_at,
        "idempotency_key": r.idempotency_key,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlWorkflows:
    """The workflow store on a database of its own connection pool."""

    db: Database
    workflows: SqlWorkflowStore

    async def close(self) -> None:
        await self.db.close()


async def open_workflow_store(
    url: str | None,
    *,
    state_dir: Path = Path(".wayport"),
    now: Callable[[], float] = time.time,
    sealer: Sealer = NO_SEALING,
) -> SqlWorkflows:
    """Open (and migrate) the database at ``url`` for workflows; ``sealer`` seals contents."""
    db = await open_database(url, state_dir=state_dir, now=now)
    return SqlWorkflows(db=db, workflows=SqlWorkflowStore(db, now=now, sealer=sealer))
