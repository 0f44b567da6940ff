"""Tenant scoping: the only way store code builds and runs SQL on a tenant's tables.

The builders (``scoped_select``, ``scoped_update``, ``scoped_delete``, ``scoped_insert``) put a
required ``:tenant`` parameter into every statement: ``tenant_id = :tenant`` in each WHERE,
``tenant_id`` in each inserted row. A ``Scope`` runs such statements and always supplies that
parameter; a statement run without it fails instead of reading every tenant. Store modules never
call ``sa.select``/``sa.update``/``sa.delete``/``sa.insert`` on these tables themselves, and
``tests/store/test_scope.py`` checks every statement the stores send::

    GET = scoped_select(sessions).where(sessions.c.id == sa.bindparam("sid"))  # built once
    row = Scope("default").execute(conn, GET, {"sid": session_id}).first()
    # SELECT … FROM sessions WHERE sessions.tenant_id = ? AND sessions.id = ?

Statements are built once, at import, with bind parameters: SQLAlchemy then compiles each one
once and reuses it, which costs a fraction of building the statement for every call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

MAX_TENANT_LENGTH = 64  #: the width of every ``tenant_id`` column
TENANT = "tenant"  #: the bind parameter every scoped statement requires


def _tenant_param() -> sa.BindParameter[str]:
    return sa.bindparam(TENANT, type_=sa.String(), required=True)


def scoped_select(table: sa.FromClause, *columns: sa.ColumnElement[Any]) -> sa.Select[Any]:
    """``SELECT columns (default: all of table) FROM table WHERE tenant_id = :tenant``."""
    return sa.select(*(columns or (table,))).where(table.c.tenant_id == _tenant_param())


def scoped_update(table: sa.Table) -> sa.Update:
    return sa.update(table).where(table.c.tenant_id == _tenant_param())


def scoped_delete(table: sa.Table) -> sa.Delete:
    return sa.delete(table).where(table.c.tenant_id == _tenant_param())


def scoped_insert(table: sa.Table) -> sa.Insert:
    """``INSERT`` whose ``tenant_id`` is the scope's, whatever the row says."""
    return sa.insert(table).values(tenant_id=_tenant_param())


class Scope:
    """Runs scoped statements for one tenant."""

    __slots__ = ("tenant",)

    def __init__(self, tenant: str) -> None:
        # an empty tenant would be a real, shared tenant named "": refuse it loudly
        if not tenant or len(tenant) > MAX_TENANT_LENGTH:
            raise ValueError(f"tenant must be 1 to {MAX_TENANT_LENGTH} characters: {tenant!r}")
        self.tenant = tenant

    def execute(
        self,
        conn: sa.Connection,
        statement: sa.Executable,
        params: Mapping[str, Any] | None = None,
    ) -> sa.CursorResult[Any]:
        return conn.execute(statement, {**(params or {}), TENANT: self.tenant})

    def execute_many(
        self, conn: sa.Connection, statement: sa.Executable, rows: Sequence[Mapping[str, Any]]
    ) -> sa.CursorResult[Any]:
        return conn.execute(statement, [{**row, TENANT: self.tenant} for row in rows])
