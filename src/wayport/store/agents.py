"""``AgentStore`` on SQL: the ``agents`` table, one row per tenant and agent name, holding the
definition a tenant made over the admin API (``PUT /v1/agents/{name}``).

    store = SqlAgentStore(db)
    row = await store.put("default", spec)          # revision 1, then 2, 3 … on each replace
    row = await store.get("default", "support")
    await store.delete("default", "support")

Runs never read this table: a run pins the version it started with (``agent_versions``), so
replacing or deleting a definition changes no run already submitted.

A put is one ``INSERT … ON CONFLICT (tenant_id, name) DO UPDATE … RETURNING`` on both
databases: two first puts of a name racing (two replicas on Postgres) both succeed, the later
one wins, and the revision counts both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param
from sqlalchemy.dialects import postgresql, sqlite

from wayport.core.agent import AgentSpec
from wayport.ports import AgentStore, StoredAgent
from wayport.store.codec import spec_from_json, spec_to_json
from wayport.store.database import Database
from wayport.store.schema import agents as A
from wayport.store.scope import TENANT, Scope, scoped_delete, scoped_select

__all__ = ["SqlAgentStore"]

_GET = scoped_select(A).where(A.c.name == param("aname"))
_LIST = scoped_select(A).order_by(A.c.name)


def _upsert(dialect: Any) -> sa.Insert:
    """Create the row at revision 1, or replace it in place (``created_at`` kept)."""
    insert = dialect.insert(A).values(
        tenant_id=param(TENANT, type_=sa.String(), required=True),
        name=param("aname"),
        spec=param("aspec"),
        version=param("aversion"),
        revision=1,
        created_at=param("now"),
        updated_at=param("now"),
    )
    upsert: sa.Insert = insert.on_conflict_do_update(
        index_elements=[A.c.tenant_id, A.c.name],
        set_={
            "spec": insert.excluded.spec,
            "version": insert.excluded.version,
            "revision": A.c.revision + 1,
            "updated_at": insert.excluded.updated_at,
        },
    ).returning(A)
    return upsert


_PUT = {"sqlite": _upsert(sqlite), "postgresql": _upsert(postgresql)}
_DELETE = scoped_delete(A).where(A.c.name == param("aname"))


def _stored(row: sa.Row[Any]) -> StoredAgent:
    return StoredAgent(
        spec=spec_from_json(row.spec),
        revision=row.revision,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class SqlAgentStore:
    def __init__(self, db: Database, *, now: Callable[[], float] = time.time) -> None:
        self._db = db
        self._now = now

    async def put(self, tenant: str, spec: AgentSpec) -> StoredAgent:
        scope, now = Scope(tenant), self._now()
        data, version = spec_to_json(spec), spec.version

        def job(conn: sa.Connection) -> StoredAgent:
            # one statement: a rival's first put of the name cannot make this one fail
            params = {"aname": spec.name, "aspec": data, "aversion": version, "now": now}
            return _stored(scope.execute(conn, _PUT[conn.dialect.name], params).one())

        return await self._db.write(job)

    async def get(self, tenant: str, name: str) -> StoredAgent | None:
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> StoredAgent | None:
            row = scope.execute(conn, _GET, {"aname": name}).first()
            return None if row is None else _stored(row)

        return await self._db.read(job)

    async def list(self, tenant: str) -> list[StoredAgent]:
        scope = Scope(tenant)
        return await self._db.read(lambda conn: [_stored(r) for r in scope.execute(conn, _LIST)])

    async def delete(self, tenant: str, name: str) -> bool:
        scope = Scope(tenant)
        return await self._db.write(
            lambda conn: scope.execute(conn, _DELETE, {"aname": name}).rowcount > 0
        )


def _implements_port(store: SqlAgentStore) -> AgentStore:
    """Never called: type checkers verify here that the SQL store implements the port."""
    return store
