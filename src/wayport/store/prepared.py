"""The hottest scoped statements (an agent turn's), run straight on the sqlite3 driver.

SQLAlchemy spends about 20 µs of bookkeeping on every statement it executes, even one it has
compiled and cached: several times what SQLite itself takes for a primary-key read or a
one-row insert, and most of an agent turn's store time. A ``Prepared`` statement is compiled
by SQLAlchemy once per database (same SQL, same parameter and result conversions) and then
runs on the DBAPI cursor directly::

    _GET = Prepared(scoped_select(sessions).where(sessions.c.id == sa.bindparam("sid")))
    row = _GET.first(Scope("acme"), conn, {"sid": session_id})  # row.agent, row.metadata, …

The tenant still comes from the ``Scope`` only, and a statement that does not bind
``:tenant`` is refused when it is built. Postgres, and any connection whose engine has cursor
listeners (tracing, the tenant audit of ``tests/store/test_scope.py``), take SQLAlchemy's own
path with the same statement, so what they observe is exactly what is sent. Rows come back as
named tuples (attribute access, as ``sqlalchemy.Row``); errors as SQLAlchemy's, so
``wayport.store.errors`` translates them the same.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from wayport.store.scope import TENANT, Scope

_Processor = Callable[[Any], Any]
Statement = sa.Select[Any] | sa.Insert | sa.Update | sa.Delete


class _Plan:
    """One statement compiled for one SQLite dialect (and, for inserts, one set of keys)."""

    __slots__ = ("defaults", "names", "params", "results", "row", "sql")

    def __init__(self, compiled: sa.engine.Compiled, columns: Sequence[str]) -> None:
        self.sql: str = compiled.string
        positions: Sequence[str] = compiled.positiontup or ()  # type: ignore[attr-defined]
        self.names = tuple(positions)
        binds: Mapping[str, sa.BindParameter[Any]] = compiled.binds  # type: ignore[attr-defined]
        # binds whose value the statement holds (``status == 'running'``, ``claimed_by=None``)
        self.defaults = {
            name: bind.effective_value
            for name, bind in binds.items()
            if not bind.required and bind.callable is None
        }
        processors: Mapping[str, _Processor] = compiled._bind_processors  # type: ignore[attr-defined]
        self.params = tuple(
            (i, processors[name]) for i, name in enumerate(self.names) if name in processors
        )
        self.row: Any = namedtuple("Row", columns) if columns else None
        self.results: tuple[tuple[int, _Processor], ...] = ()

    def bind(self, params: Mapping[str, Any], tenant: str) -> list[Any]:
        merged = {**self.defaults, **params, TENANT: tenant}
        values = [merged[name] for name in self.names]
        try:
            for i, process in self.params:
                values[i] = process(values[i])
        except Exception as exc:  # a value the column cannot hold: as SQLAlchemy reports it
            raise _wrapped(self.sql, params, exc) from exc
        return values


class Prepared:
    """A scoped statement for the hot path; see the module docstring."""

    __slots__ = ("_columns", "_insert", "_plans", "statement")

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self._insert = isinstance(statement, sa.Insert)
        exported = getattr(statement, "exported_columns", ())
        self._columns: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = tuple(
            (c.key, c.type) for c in exported
        )
        # per dialect (the object, not its id, which a later engine's may reuse) and insert
        # keys: the plan, or None where SQLAlchemy runs the statement
        self._plans: dict[tuple[sa.Dialect, frozenset[str] | None], _Plan | None] = {}

    # -- the calls ---------------------------------------------------------------------------

    def first(self, scope: Scope, conn: sa.Connection, params: Mapping[str, Any]) -> Any:
        """The first row, or None."""
        plan = self._plan(conn, None)
        if plan is None:
            return scope.execute(conn, self.statement, params).first()
        found = self._fetch(conn, plan, plan.bind(params, scope.tenant), one=True)
        return None if found is None else self._row(plan, found)

    def scalar(self, scope: Scope, conn: sa.Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        plan = self._plan(conn, None)
        if plan is None:
            return scope.execute(conn, self.statement, params).scalar()
        found = self._fetch(conn, plan, plan.bind(params, scope.tenant), one=True)
        return None if found is None else self._row(plan, found)[0]

    def all(self, scope: Scope, conn: sa.Connection, params: Mapping[str, Any]) -> list[Any]:
        plan = self._plan(conn, None)
        if plan is None:
            return list(scope.execute(conn, self.statement, params))
        found = self._fetch(conn, plan, plan.bind(params, scope.tenant), one=False)
        return [self._row(plan, r) for r in found]

    def execute(self, scope: Scope, conn: sa.Connection, params: Mapping[str, Any]) -> None:
        """Run a statement whose result is not needed (an insert)."""
        plan = self._plan(conn, frozenset(params) if self._insert else None)
        if plan is None:
            scope.execute(conn, self.statement, params)
            return
        self._fetch(conn, plan, plan.bind(params, scope.tenant), one=False)

    def execute_many(
        self, scope: Scope, conn: sa.Connection, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Run the statement once per row (rows with the same keys), as one executemany."""
        if not rows:
            return
        plan = self._plan(conn, frozenset(rows[0]) if self._insert else None)
        if plan is None:
            scope.execute_many(conn, self.statement, rows)
            return
        tenant = scope.tenant
        values = [plan.bind(row, tenant) for row in rows]
        _begun(conn)
        raw: Any = conn.connection.driver_connection
        try:
            raw.executemany(plan.sql, values).close()
        except sqlite3.Error as exc:
            raise _wrapped(plan.sql, values, exc) from exc

    # -- the machinery -----------------------------------------------------------------------

    def _plan(self, conn: sa.Connection, keys: frozenset[str] | None) -> _Plan | None:
        engine = conn.engine
        if engine.dispatch.before_cursor_execute or engine.dispatch.after_cursor_execute:
            return None  # someone watches the cursor: let SQLAlchemy run it, events and all
        dialect = conn.dialect
        key = (dialect, keys)
        try:
            return self._plans[key]
        except KeyError:
            plan = self._compile(dialect, keys)
            self._plans[key] = plan
            return plan

    def _compile(self, dialect: sa.Dialect, keys: frozenset[str] | None) -> _Plan | None:
        if dialect.name != "sqlite" or dialect.driver != "pysqlite":
            return None
        if keys is not None:
            compiled = self.statement.compile(
                dialect=dialect, column_keys=sorted(keys), for_executemany=True
            )
        else:
            compiled = self.statement.compile(dialect=dialect)
        if TENANT not in compiled.binds:
            raise ValueError(f"not a scoped statement (no :{TENANT}): {compiled.string}")
        if (
            "POSTCOMPILE" in compiled.string
            or getattr(compiled, "insert_prefetch", None)
            or getattr(compiled, "update_prefetch", None)
        ):
            return None  # expanding IN, Python-side defaults: SQLAlchemy's job
        plan = _Plan(compiled, [name for name, _ in self._columns])
        plan.results = tuple(
            (i, process)
            for i, (_, type_) in enumerate(self._columns)
            if (process := type_.dialect_impl(dialect).result_processor(dialect, None)) is not None
        )
        return plan

    @staticmethod
    def _fetch(conn: sa.Connection, plan: _Plan, values: list[Any], *, one: bool) -> Any:
        """Run the statement; its first row (``one``) or all its rows (an empty list for a
        statement without result columns)."""
        _begun(conn)
        raw: Any = conn.connection.driver_connection
        try:
            cursor: sqlite3.Cursor = raw.execute(plan.sql, values)
            try:
                if plan.row is None:
                    return []
                if len(cursor.description or ()) != len(plan.row._fields):
                    raise sa.exc.InvalidRequestError(f"unexpected result columns: {plan.sql}")
                return cursor.fetchone() if one else cursor.fetchall()
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            raise _wrapped(plan.sql, values, exc) from exc

    @staticmethod
    def _row(plan: _Plan, found: tuple[Any, ...]) -> Any:
        if plan.results:
            values = list(found)
            for i, process in plan.results:
                values[i] = process(values[i])
            return plan.row._make(values)
        return plan.row._make(found)


def _begun(conn: sa.Connection) -> None:
    """Statements belong to the connection's transaction: begin it (``BEGIN [IMMEDIATE]``,
    ``wayport.store.sqlite``) if nothing has yet, as SQLAlchemy's autobegin would."""
    if not conn.in_transaction():
        conn.begin()


def _wrapped(sql: str, values: Any, exc: Exception) -> sa.exc.StatementError:
    """SQLAlchemy's exception for ``exc`` (``IntegrityError`` for a sqlite3 one, …)."""
    return sa.exc.DBAPIError.instance(sql, values, exc, sqlite3.Error)
