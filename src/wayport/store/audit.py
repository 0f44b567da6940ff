"""``AuditStore`` on SQL: each tenant's append-only, hash-chained audit log.

    store = SqlAuditStore(db)
    entry = await store.append("acme", actor="key:abc", action="key.create", target="…",
                               details={"role": "user"}, at=now)
    page = await store.list("acme", after=0, limit=100)

``append`` numbers entries ``1, 2, 3 …`` per tenant and links each to the previous one by
hash (``wayport.core.identity.audit_hash``) in the transaction that inserts it; on Postgres
a transaction-scoped advisory lock per tenant makes concurrent appenders take turns (SQLite's
single writer already does). The store has no way to change or delete an entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from wayport.core.identity import GENESIS_HASH, AuditEntry, audit_hash
from wayport.store.database import Database
from wayport.store.schema import audit_log as L
from wayport.store.scope import TENANT, Scope, scoped_insert, scoped_select

# "WayA": the advisory-lock class of audit appends (the tenant's hash is the second key)
AUDIT_LOCK_KEY = 0x57617941

_LAST = scoped_select(L, L.c.seq, L.c.hash).order_by(L.c.seq.desc()).limit(1)
_INSERT = scoped_insert(L)
_PAGE = scoped_select(L).where(L.c.seq > param("after")).order_by(L.c.seq).limit(param("limit"))
_LOCK = sa.select(
    sa.func.pg_advisory_xact_lock(AUDIT_LOCK_KEY, sa.func.hashtext(sa.bindparam(TENANT)))
)


def entry_from_row(row: sa.Row[Any]) -> AuditEntry:
    return AuditEntry(
        tenant=row.tenant_id,
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        details=row.details or {},
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


class SqlAuditStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(
        self,
        tenant: str,
        *,
        actor: str | None,
        action: str,
        target: str | None,
        details: Mapping[str, Any],
        at: float,
    ) -> AuditEntry:
        scope = Scope(tenant)
        kept = dict(details)

        def job(conn: sa.Connection) -> AuditEntry:
            if conn.dialect.name == "postgresql":
                scope.execute(conn, _LOCK)
            last = scope.execute(conn, _LAST).first()
            seq, prev = (1, GENESIS_HASH) if last is None else (last.seq + 1, last.hash)
            digest = audit_hash(
                tenant=tenant,
                seq=seq,
                at=at,
                actor=actor,
                action=action,
                target=target,
                details=kept,
                prev_hash=prev,
            )
            row = {
                "seq": seq,
                "at": at,
                "actor": actor,
                "action": action,
                "target": target,
                "details": kept,
                "prev_hash": prev,
                "hash": digest,
            }
            scope.execute(conn, _INSERT, row)
            return AuditEntry(
                tenant=tenant,
                seq=seq,
                at=at,
                actor=actor,
                action=action,
                target=target,
                details=kept,
                prev_hash=prev,
                hash=digest,
            )

        return await self._db.write(job)

    async def list(self, tenant: str, *, after: int = 0, limit: int = 100) -> list[AuditEntry]:
        """Entries with ``seq > after``, oldest first."""
        scope = Scope(tenant)
        params = {"after": after, "limit": limit}
        return await self._db.read(
            lambda conn: [entry_from_row(r) for r in scope.execute(conn, _PAGE, params)]
        )
