"""The statements of ``store/workflows.py``, built once at import, and its row mappers."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from wayport.core.workflow_plan import StepStatus
from wayport.core.workflow_run import StepRow, WorkflowRun, WorkflowStatus
from wayport.store.schema import workflow_defs as D
from wayport.store.schema import workflow_runs as R
from wayport.store.schema import workflow_steps as S
from wayport.store.scope import scoped_insert, scoped_select, scoped_update
from wayport.store.sealing import NO_SEALING, Sealer

#: the sealing purposes (associated data) of the contents sealed at rest with keys
RUN_INPUT, RUN_OUTPUT, RUN_ERROR = (
    "workflow_runs.input",
    "workflow_runs.output",
    "workflow_runs.error",
)
STEP_OUTPUT, STEP_ERROR = "workflow_steps.output", "workflow_steps.error"

QUEUED, RUNNING, WAITING = "queued", "running", "waiting"
UNFINISHED = (QUEUED, RUNNING, WAITING)

_C = R.alias("candidate")
_BY_ID = R.c.id == param("rid")
_GET_DEF = scoped_select(D, D.c.definition).where(
    D.c.name == param("name"), D.c.version == param("version")
)
_INSERT_DEF = scoped_insert(D)
_GET = scoped_select(R).where(_BY_ID)
_INSERT = scoped_insert(R)
_STEPS = scoped_select(S).where(S.c.run_id == param("rid")).order_by(S.c.started_at, S.c.path)
_STEP_PATHS = scoped_select(S, S.c.path).where(
    S.c.run_id == param("rid"), S.c.path.in_(param("paths", expanding=True))
)
_STEP = scoped_select(S).where(S.c.run_id == param("rid"), S.c.path == param("path"))
_INSERT_STEP = scoped_insert(S)
_STEP_FIELDS = (
    "step_id",
    "item_index",
    "kind",
    "status",
    "output",
    "error",
    "attempt",
    "wake_at",
    "idempotency_key",
    "started_at",
    "finished_at",
)
_UPDATE_STEP = (
    scoped_update(S)
    .where(S.c.run_id == param("b_run"), S.c.path == param("b_path"))
    .values({f: param(f"v_{f}", type_=S.c[f].type) for f in _STEP_FIELDS})
)
_HELD = scoped_select(R, R.c.status, R.c.claimed_by).where(_BY_ID)
_TOUCH = scoped_update(R).where(_BY_ID).values(updated_at=param("now"))


def _picked(candidates: sa.Select[Any]) -> sa.Select[Any]:
    # materialised once: see store/runs.py for why a plain IN (subquery) over-claims on Postgres
    cte = candidates.cte("picked").prefix_with("MATERIALIZED", dialect="postgresql")
    return sa.select(cte.c.id)


_CLAIMABLE = sa.or_(
    _C.c.status == QUEUED, sa.and_(_C.c.status == WAITING, _C.c.wake_at <= param("now"))
)
_CLAIM = (
    scoped_update(R)
    .where(
        R.c.id.in_(
            _picked(
                scoped_select(_C, _C.c.id)
                .where(_CLAIMABLE)
                .order_by(_C.c.created_at, _C.c.id)
                .limit(param("limit"))
                .with_for_update(skip_locked=True)
            )
        ),
        sa.or_(R.c.status == QUEUED, sa.and_(R.c.status == WAITING, R.c.wake_at <= param("now"))),
    )
    .values(
        status=RUNNING,
        claimed_by=param("worker"),
        heartbeat_at=param("now"),
        updated_at=param("now"),
        wake_at=None,
        attempt=R.c.attempt + 1,
    )
    .returning(R)
)
_HEARTBEAT = (
    scoped_update(R)
    .where(
        R.c.id.in_(param("rids", expanding=True)),
        R.c.status == RUNNING,
        R.c.claimed_by == param("worker"),
    )
    .values(heartbeat_at=param("now"))
    .returning(R.c.id)
)
_REQUEUE = (
    scoped_update(R)
    .where(R.c.status == RUNNING, R.c.heartbeat_at < param("before"))
    .values(status=QUEUED, claimed_by=None, heartbeat_at=None, updated_at=param("now"))
    .returning(R.c.id)
)
_PARK = (
    scoped_update(R)
    .where(
        _BY_ID,
        R.c.status == RUNNING,
        R.c.claimed_by == param("worker"),
        R.c.revision == param("expect_rev"),
    )
    .values(
        status=WAITING,
        wake_at=param("new_wake"),
        claimed_by=None,
        heartbeat_at=None,
        updated_at=param("now"),
    )
    .returning(R)
)
_FINISH = (
    scoped_update(R)
    .where(_BY_ID, R.c.status.in_(param("sources", expanding=True)))
    .values(
        status=param("to"),
        output=param("new_output", type_=R.c.output.type),
        error=param("new_error"),
        claimed_by=None,
        heartbeat_at=None,
        wake_at=None,
        updated_at=param("now"),
    )
    .returning(R)
)
_NUDGE = (
    scoped_update(R)
    .where(_BY_ID)
    .values(
        revision=R.c.revision + 1,
        status=sa.case((R.c.status == WAITING, QUEUED), else_=R.c.status),
        wake_at=None,
        updated_at=param("now"),
    )
    .returning(R)
)
_RESOLVE_STEP = (
    scoped_update(S)
    .where(S.c.run_id == param("rid"), S.c.path == param("spath"), S.c.status == WAITING)
    .values(
        status=param("to"),
        output=param("new_output", type_=S.c.output.type),
        error=param("new_error"),
        finished_at=param("now"),
    )
    .returning(S.c.path)
)
_LIST = scoped_select(R).order_by(R.c.created_at.desc(), R.c.id).limit(param("limit"))


def run_from_row(row: Any, sealer: Sealer = NO_SEALING) -> WorkflowRun:
    tenant = row.tenant_id
    return WorkflowRun(
        id=row.id,
        tenant_id=row.tenant_id,
        workflow=row.workflow,
        version=row.version,
        status=WorkflowStatus(row.status),
        input=sealer.open(tenant, RUN_INPUT, row.input),
        output=sealer.open(tenant, RUN_OUTPUT, row.output),
        error=sealer.open_text(tenant, RUN_ERROR, row.error),
        trigger=row.trigger,
        parent_run_id=row.parent_run_id,
        parent_step=row.parent_step,
        wake_at=row.wake_at,
        revision=row.revision,
        attempt=row.attempt,
        claimed_by=row.claimed_by,
        heartbeat_at=row.heartbeat_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def step_from_row(row: Any, sealer: Sealer = NO_SEALING) -> StepRow:
    tenant = row.tenant_id
    return StepRow(
        path=row.path,
        step_id=row.step_id,
        kind=row.kind,
        status=StepStatus(row.status),
        item_index=row.item_index,
        output=sealer.open(tenant, STEP_OUTPUT, row.output),
        error=sealer.open_text(tenant, STEP_ERROR, row.error),
        attempt=row.attempt,
        wake_at=row.wake_at,
        idempotency_key=row.idempotency_key,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )
