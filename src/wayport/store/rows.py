"""Rows to core dataclasses and back: the one place that knows both shapes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from wayport.core.session import Run, RunStatus, RunStep, Session, StepKind, StoredMessage


def message_row(m: StoredMessage) -> dict[str, Any]:
    return {
        "session_id": m.session_id,
        "seq": m.seq,
        "role": m.role,
        "content": m.content,
        "name": m.name,
        "tool_calls": list(m.tool_calls) or None,
        "tool_call_id": m.tool_call_id,
        "tokens": m.tokens,
        "created_at": m.created_at,
        "run_id": m.run_id,
        "step_no": m.step_no,
        "idempotency_key": m.idempotency_key,
    }


def message_from_row(row: sa.Row[Any]) -> StoredMessage:
    return StoredMessage(
        session_id=row.session_id,
        seq=row.seq,
        role=row.role,
        content=row.content,
        name=row.name,
        tool_calls=tuple(row.tool_calls or ()),
        tool_call_id=row.tool_call_id,
        tokens=row.tokens,
        created_at=row.created_at,
        run_id=row.run_id,
        step_no=row.step_no,
        idempotency_key=row.idempotency_key,
    )


def session_from_row(row: sa.Row[Any]) -> Session:
    return Session(
        id=row.id,
        tenant_id=row.tenant_id,
        agent=row.agent,
        agent_version=row.agent_version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        metadata=row.metadata or {},
        summary=row.summary,
        pinned=tuple(row.pinned or ()),
        message_count=row.message_count,
        cold=row.archived_upto > 0,
    )


def run_from_row(row: sa.Row[Any]) -> Run:
    return Run(
        id=row.id,
        tenant_id=row.tenant_id,
        session_id=row.session_id,
        status=RunStatus(row.status),
        input=row.input,
        output=row.output,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        attempt=row.attempt,
        claimed_by=row.claimed_by,
        heartbeat_at=row.heartbeat_at,
        agent_version=row.agent_version,
    )


def step_from_row(row: sa.Row[Any]) -> RunStep:
    return RunStep(
        run_id=row.run_id,
        step_no=row.step_no,
        kind=StepKind(row.kind),
        payload=row.payload,
        idempotency_key=row.idempotency_key,
        created_at=row.created_at,
    )
