"""Re-sealing stored contents with the active key, after a key rotation (``wayport store
reencrypt``)::

    sealer = Sealer.parse("k2:…,k1:…")         # k2 new and first, k1 still held
    report = await reencrypt(db, sealer, batch=500, progress=lambda table, n: ...)
    report.resealed                            # rows written with k2; then k1 may be dropped

Each batch is read and rewritten in one write transaction (rows locked on Postgres), walking
every table in primary-key order per tenant, so it can run beside a live server and be
interrupted and started again: rows already sealed with the active key are skipped. With
sealing off (no keys) it writes sealed rows back as plaintext, which is how encryption is
turned off.

Listing the tenants is the one query here that reads across tenants: every other statement is
built by ``Scope``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import sqlalchemy as sa

from wayport.store.database import Database
from wayport.store.schema import (
    channel_inbox,
    channel_outbox,
    eval_results,
    feedback,
    messages,
    release_events,
    run_steps,
    runs,
    session_archive,
    sessions,
    webhook_outbox,
    workflow_runs,
    workflow_steps,
)
from wayport.store.scope import Scope, scoped_select, scoped_update
from wayport.store.sealing import Sealer

__all__ = ["SEALED_COLUMNS", "ResealReport", "reencrypt"]

#: table -> (column, kind) of everything sealed at rest; kind: json, text or bytes
SEALED_COLUMNS: dict[sa.Table, tuple[tuple[str, str], ...]] = {
    messages: (("content", "json"), ("tool_calls", "json")),
    sessions: (("summary", "text"),),
    session_archive: (("data", "bytes"),),
    runs: (("input", "json"), ("output", "json")),
    run_steps: (("payload", "json"),),
    channel_inbox: (("payload", "json"),),
    channel_outbox: (("payload", "json"), ("reason", "text")),
    webhook_outbox: (("secret", "text"), ("last_error", "text")),
    workflow_runs: (("input", "json"), ("output", "json"), ("error", "text")),
    workflow_steps: (("output", "json"), ("error", "text")),
    release_events: (("detail", "json"),),
    feedback: (("comment", "text"),),
    eval_results: (("results", "json"),),
}

Progress = Callable[[str, int], None]  #: (table, rows just scanned)


@dataclass(slots=True)
class ResealReport:
    scanned: int = 0
    resealed: int = 0


def _key(table: sa.Table) -> list[sa.Column[Any]]:
    return [c for c in table.primary_key.columns if c.name != "tenant_id"]


def _batch_select(table: sa.Table) -> sa.Select[Any]:
    key = _key(table)
    columns = [*key, *(table.c[name] for name, _ in SEALED_COLUMNS[table])]
    after = sa.tuple_(*key) > sa.tuple_(*(sa.bindparam(f"after_{c.name}") for c in key))
    first = scoped_select(table, *columns).order_by(*key).limit(sa.bindparam("limit"))
    return first.where(after).with_for_update()


def _first_select(table: sa.Table) -> sa.Select[Any]:
    key = _key(table)
    columns = [*key, *(table.c[name] for name, _ in SEALED_COLUMNS[table])]
    return (
        scoped_select(table, *columns).order_by(*key).limit(sa.bindparam("limit")).with_for_update()
    )


def _update(table: sa.Table) -> sa.Update:
    where = [c == sa.bindparam(f"k_{c.name}") for c in _key(table)]
    values = {
        name: sa.bindparam(f"v_{name}", type_=table.c[name].type)
        for name, _ in SEALED_COLUMNS[table]
    }
    return scoped_update(table).where(*where).values(values)


def _reseal(sealer: Sealer, tenant: str, purpose: str, kind: str, value: Any) -> Any:
    if kind == "json":
        return sealer.seal(tenant, purpose, sealer.open(tenant, purpose, value))
    if kind == "text":
        return sealer.seal_text(tenant, purpose, sealer.open_text(tenant, purpose, value))
    return sealer.seal_bytes(tenant, purpose, sealer.open_bytes(tenant, purpose, value))


async def tenants(db: Database) -> list[str]:
    """Every tenant that owns a row of a table with sealed columns."""
    owners = sa.union(*(sa.select(t.c.tenant_id) for t in SEALED_COLUMNS)).subquery()
    stmt = sa.select(owners.c.tenant_id).order_by(owners.c.tenant_id)
    return await db.read(lambda conn: [str(r[0]) for r in conn.execute(stmt)])


async def count_rows(db: Database) -> int:
    """Rows in the tables that hold sealed columns, all tenants (for a progress bar)."""
    stmts = [sa.select(sa.func.count()).select_from(t) for t in SEALED_COLUMNS]
    return await db.read(lambda conn: sum(int(conn.execute(s).scalar() or 0) for s in stmts))


async def reencrypt(
    db: Database,
    sealer: Sealer,
    *,
    batch: int = 500,
    only_tenants: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> ResealReport:
    """Re-seal every stored value not sealed with ``sealer``'s active key. Raises
    ``StoreError`` for a row no key held by ``sealer`` opens (nothing of that batch stays)."""
    if batch < 1:
        raise ValueError("batch must be >= 1")
    report = ResealReport()
    for tenant in only_tenants if only_tenants is not None else await tenants(db):
        for table in SEALED_COLUMNS:
            cursor: dict[str, Any] | None = None
            while True:
                batch_job = partial(
                    _reseal_batch,
                    scope=Scope(tenant),
                    table=table,
                    sealer=sealer,
                    cursor=cursor,
                    limit=batch,
                )
                rows, changed = await db.write(batch_job)
                report.scanned += len(rows)
                report.resealed += changed
                if progress is not None and rows:
                    progress(table.name, len(rows))
                if len(rows) < batch:
                    break
                cursor = {f"after_{c.name}": getattr(rows[-1], c.name) for c in _key(table)}
    return report


def _reseal_batch(
    conn: sa.Connection,
    *,
    scope: Scope,
    table: sa.Table,
    sealer: Sealer,
    cursor: dict[str, Any] | None,
    limit: int,
) -> tuple[list[Any], int]:
    """One batch: read (locked), re-seal what is not current, write back; same transaction."""
    columns, key = SEALED_COLUMNS[table], _key(table)
    if cursor is None:
        rows = list(scope.execute(conn, _FIRST[table], {"limit": limit}))
    else:
        rows = list(scope.execute(conn, _LATER[table], {**cursor, "limit": limit}))
    changes = []
    for row in rows:
        values = {name: getattr(row, name) for name, _ in columns}
        if all(sealer.is_current(v) for v in values.values()):
            continue
        change = {f"k_{c.name}": getattr(row, c.name) for c in key}
        for name, kind in columns:
            purpose = f"{table.name}.{name}"
            change[f"v_{name}"] = _reseal(sealer, scope.tenant, purpose, kind, values[name])
        changes.append(change)
    if changes:
        scope.execute_many(conn, _UPDATE[table], changes)
    return rows, len(changes)


_FIRST = {t: _first_select(t) for t in SEALED_COLUMNS}
_LATER = {t: _batch_select(t) for t in SEALED_COLUMNS}
_UPDATE = {t: _update(t) for t in SEALED_COLUMNS}
