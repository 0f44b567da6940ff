"""``UsageStore`` on SQL: the usage ledger, appended in batches and added up in SQL.

store = SqlUsageStore(db)
await store.record([record, …])                    # one transaction, any tenants
await store.totals("acme", group_by="model", since=t0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from wayport.core.usage import UsageRecord, UsageTotal, check_group
from wayport.store.database import Database
from wayport.store.schema import usage_ledger as U
from wayport.store.scope import Scope, scoped_insert, scoped_select

_INSERT = scoped_insert(U)
_COLUMNS = {
    "model": U.c.model,
    "agent": U.c.agent,
    "key": U.c.key_id,
    "user": U.c.user_id,
    "tenant": U.c.tenant_id,
    "session": U.c.session_id,
    "run": U.c.run_id,
    "kind": U.c.kind,
}
_SINCE = U.c.at >= param("since")
_UNTIL = U.c.at < param("until")


def _row(r: UsageRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "at": r.at,
        "kind": r.kind,
        "key_id": r.key_id,
        "user_id": r.user,
        "agent": r.agent,
        "agent_version": r.agent_version,
        "session_id": r.session_id,
        "run_id": r.run_id,
        "model": r.model,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "cost": r.cost,
        "latency_ms": r.latency_ms,
        "status": r.status,
    }


def _group_column(group_by: str, dialect: str) -> sa.ColumnElement[Any]:
    if group_by != "day":
        return _COLUMNS[group_by]
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.to_timestamp(U.c.at).op("AT TIME ZONE")("UTC"), "YYYY-MM-DD")
    return sa.func.strftime("%Y-%m-%d", U.c.at, "unixepoch")


def _totals_statement(group_by: str, dialect: str, since: bool, until: bool) -> sa.Select[Any]:
    group = _group_column(group_by, dialect).label("grp")
    is_request = sa.case((U.c.kind == "request", 1), else_=0)
    stmt = scoped_select(
        U,
        group,
        sa.func.sum(is_request).label("requests"),
        sa.func.sum(1 - is_request).label("runs"),
        sa.func.sum(U.c.prompt_tokens).label("prompt_tokens"),
        sa.func.sum(U.c.completion_tokens).label("completion_tokens"),
        sa.func.sum(U.c.cost).label("cost"),
        sa.func.avg(U.c.latency_ms).label("latency_ms"),
    )
    if since:
        stmt = stmt.where(_SINCE)
    if until:
        stmt = stmt.where(_UNTIL)
    return stmt.group_by(group)


class SqlUsageStore:
    def __init__(self, db: Database | Callable[[], Database]) -> None:
        """``db``: the database, or a function that finds it when it is needed (the
        agents' store, opened at start)."""
        self._find = db if callable(db) else (lambda: db)

    @property
    def _db(self) -> Database:
        return self._find()

    async def record(self, records: Sequence[UsageRecord]) -> None:
        if not records:
            return
        by_tenant: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            by_tenant.setdefault(r.tenant, []).append(_row(r))

        def job(conn: sa.Connection) -> None:
            for tenant, rows in by_tenant.items():
                Scope(tenant).execute_many(conn, _INSERT, rows)

        await self._db.write(job)

    async def totals(
        self,
        tenant: str,
        *,
        group_by: str,
        since: float | None = None,
        until: float | None = None,
    ) -> list[UsageTotal]:
        check_group(group_by)
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> list[UsageTotal]:
            stmt = _totals_statement(
                group_by, conn.dialect.name, since is not None, until is not None
            )
            rows = scope.execute(conn, stmt, {"since": since, "until": until}).all()
            return [
                UsageTotal(
                    group=row.grp or "",
                    requests=int(row.requests or 0),
                    runs=int(row.runs or 0),
                    prompt_tokens=int(row.prompt_tokens or 0),
                    completion_tokens=int(row.completion_tokens or 0),
                    cost=float(row.cost or 0.0),
                    latency_ms=float(row.latency_ms or 0.0),
                )
                for row in rows
            ]

        found = await self._db.read(job)
        return sorted(found, key=lambda t: (-t.cost, t.group))

    async def records(
        self,
        tenant: str,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[UsageRecord]:
        scope = Scope(tenant)
        stmt = scoped_select(U)
        if since is not None:
            stmt = stmt.where(_SINCE)
        if until is not None:
            stmt = stmt.where(_UNTIL)
        stmt = stmt.order_by(U.c.at, U.c.id).limit(param("limit"))

        def job(conn: sa.Connection) -> list[UsageRecord]:
            rows = scope.execute(conn, stmt, {"since": since, "until": until, "limit": limit})
            return [
                UsageRecord(
                    tenant=row.tenant_id,
                    id=row.id,
                    at=row.at,
                    kind=row.kind,
                    model=row.model,
                    prompt_tokens=row.prompt_tokens,
                    completion_tokens=row.completion_tokens,
                    cost=row.cost,
                    latency_ms=row.latency_ms,
                    status=row.status,
                    key_id=row.key_id,
                    user=row.user_id,
                    agent=row.agent,
                    agent_version=row.agent_version,
                    session_id=row.session_id,
                    run_id=row.run_id,
                )
                for row in rows
            ]

        return await self._db.read(job)
