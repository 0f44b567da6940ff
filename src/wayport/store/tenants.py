"""``TenantStore`` on SQL: the registry of tenants (projects) and their organisations.

    store = SqlTenantStore(db)
    await store.create(Tenant(id="acme-prod", org="acme", name="Acme production", created_at=now))
    await store.get("acme-prod")
    await store.list(org="acme")

The ``tenants`` table is the list of scopes itself, not data inside one: a tenant is read by
its own id (through ``Scope``), and listed by organisation or, by the system, all at once.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from wayport.core.errors import Conflict
from wayport.core.identity import Tenant
from wayport.store.database import Database
from wayport.store.schema import tenants as T
from wayport.store.scope import Scope, scoped_insert, scoped_select

_GET = scoped_select(T)
_INSERT = scoped_insert(T)
_ALL = sa.select(T).order_by(T.c.org, T.c.tenant_id)
_OF_ORG = sa.select(T).where(T.c.org == param("org")).order_by(T.c.tenant_id)


def tenant_from_row(row: sa.Row[Any]) -> Tenant:
    return Tenant(id=row.tenant_id, org=row.org, name=row.name, created_at=row.created_at)


class SqlTenantStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, tenant: Tenant) -> Tenant:
        """Raises ``Conflict`` when the id is taken."""
        scope = Scope(tenant.id)
        row = {"org": tenant.org, "name": tenant.name, "created_at": tenant.created_at}

        def job(conn: sa.Connection) -> None:
            scope.execute(conn, _INSERT, row)

        try:
            await self._db.write(job)
        except Conflict as exc:
            raise Conflict(f"tenant {tenant.id!r} already exists", code="tenant_exists") from exc
        return tenant

    async def get(self, tenant_id: str) -> Tenant | None:
        scope = Scope(tenant_id)

        def job(conn: sa.Connection) -> Tenant | None:
            row = scope.execute(conn, _GET).first()
            return None if row is None else tenant_from_row(row)

        return await self._db.read(job)

    async def list(self, *, org: str | None = None) -> list[Tenant]:
        """The tenants of ``org``; every tenant when ``org`` is ``None`` (system use only)."""
        if org is None:
            return await self._db.read(
                lambda conn: [tenant_from_row(r) for r in conn.execute(_ALL)]
            )
        return await self._db.read(
            lambda conn: [tenant_from_row(r) for r in conn.execute(_OF_ORG, {"org": org})]
        )
