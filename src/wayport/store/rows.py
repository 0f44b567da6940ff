"""Rows to core dataclasses and back: the one place that knows both shapes.

Contents that may be sealed at rest (``wayport.store.sealing``) pass through the store's
``Sealer`` here; without keys that costs one type check per value."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from wayport.core.session import Run, RunStatus, RunStep, Session, StepKind, StoredMessage
from wayport.store.sealing import NO_SEALING, Sealer


def message_row(m: StoredMessage, sealer: Sealer = NO_SEALING, tenant: str = "") -> dict[str, Any]:
    content: Any = m.content
    calls: Any = list(m.tool_calls) or None
    if sealer.enabled:
        content = sealer.seal(tenant, "messages.content", content)
        calls = sealer.seal(tenant, "messages.tool_calls", calls)
    return {
        "session_id": m.session_id,
        "seq": m.seq,
        "role": m.role,
        "content": content,
        "name": m.name,
        "tool_calls": calls,
        "tool_call_id": m.tool_call_id,
        "tokens": m.tokens,
        "created_at": m.created_at,
        "run_id": m.run_id,
        "step_no": m.step_no,
        "idempotency_key": m.idempotency_key,
    }


def message_from_row(row: sa.Row[Any], sealer: Sealer = NO_SEALING) -> StoredMessage:
    content, calls = row.content, row.tool_calls
    if type(content) is dict or type(calls) is dict:  # content is never a plain object
        content = sealer.open(row.tenant_id, "messages.content", content)
        calls = sealer.open(row.tenant_id, "messages.tool_calls", calls)
    return StoredMessage(
        session_id=row.session_id,
        seq=row.seq,
        role=row.role,
        content=content,
        name=row.name,
        tool_calls=tuple(calls or ()),
        tool_call_id=row.tool_call_id,
        tokens=row.tokens,
        created_at=row.created_at,
        run_id=row.run_id,
        step_no=row.step_no,
        idempotency_key=row.idempotency_key,
    )


def session_from_row(row: sa.Row[Any], sealer: Sealer = NO_SEALING) -> Session:
    return Session(
        id=row.id,
        tenant_id=row.tenant_id,
        agent=row.agent,
        agent_version=row.agent_version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        metadata=row.metadata or {},
        summary=sealer.open_text(row.tenant_id, "sessions.summary", row.summary),
        pinned=tuple(row.pinned or ()),
        message_count=row.message_count,
        cold=row.archived_upto > 0,
    )


def run_from_row(row: sa.Row[Any], sealer: Sealer = NO_SEALING) -> Run:
    return Run(
        id=row.id,
        tenant_id=row.tenant_id,
        session_id=row.session_id,
        status=RunStatus(row.status),
        input=sealer.open(row.tenant_id, "runs.input", row.input),
        output=sealer.open(row.tenant_id, "runs.output", row.output),
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        attempt=row.attempt,
        claimed_by=row.claimed_by,
        heartbeat_at=row.heartbeat_at,
        agent_version=row.agent_version,
        started_at=row.started_at,
    )


def step_from_row(row: sa.Row[Any], sealer: Sealer = NO_SEALING) -> RunStep:
    return RunStep(
        run_id=row.run_id,
        step_no=row.step_no,
        kind=StepKind(row.kind),
        payload=sealer.open(row.tenant_id, "run_steps.payload", row.payload),
        idempotency_key=row.idempotency_key,
        created_at=row.created_at,
    )
