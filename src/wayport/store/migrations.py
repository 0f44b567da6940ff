"""Versioned, forward-only schema migrations, written in code and run at start.

``schema_version`` records each applied migration. ``Database.migrate`` (``open_database``
calls it) applies the missing ones in order, all in one transaction, so a failed migration
leaves the schema as it was (DDL is transactional on both SQLite and Postgres). Starters that
race are serialised: on Postgres by a transaction-scoped advisory lock taken before anything is
read, on SQLite by the write lock ``BEGIN IMMEDIATE`` takes; the loser waits, then finds nothing
left to do.

Adding a migration: append ``Migration(version=N + 1, …)`` whose ``apply`` issues the change
(``ALTER TABLE``, a new index, a data fix) and update ``schema.py`` to match. Never edit a
released migration; a database newer than the code is refused rather than guessed at.

Version 1 creates the tables from ``schema.py`` as they are now; the first change to
``schema.py`` must freeze it by copying today's table definitions into ``_v1``
(``tests/store/test_migrations.py`` pins the version 1 tables and fails until then).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from wayport.core.errors import StoreError
from wayport.store import schema

# "WayP": any fixed 64-bit key works; it only has to differ from other applications' keys
ADVISORY_LOCK_KEY = 0x57617950

schema_version = sa.Table(
    "schema_version",
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.Double, nullable=False),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    version: int
    description: str
    apply: Callable[[sa.Connection], None]


def _v1(conn: sa.Connection) -> None:
    schema.metadata.create_all(conn)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(version=1, description="sessions, messages, archive, runs, run steps", apply=_v1),
)


def apply_migrations(
    conn: sa.Connection,
    *,
    migrations: Sequence[Migration] = MIGRATIONS,
    now: Callable[[], float] = time.time,
) -> list[int]:
    """Apply the missing migrations inside the caller's write transaction (``Database.migrate``
    provides one); return their versions, ``[]`` when already up to date. Raises ``StoreError``
    when the database is newer than ``migrations``."""
    _check_sequence(migrations)
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))
    # on SQLite the transaction began with BEGIN IMMEDIATE: the write lock is already ours
    schema_version.create(conn, checkfirst=True)
    current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise StoreError(
            f"the database schema is at version {current}, newer than this Wayport knows "
            f"({latest}); upgrade Wayport or point it at another database"
        )
    applied: list[int] = []
    for migration in migrations[current:]:
        migration.apply(conn)
        conn.execute(
            sa.insert(schema_version).values(
                version=migration.version, description=migration.description, applied_at=now()
            )
        )
        applied.append(migration.version)
    return applied


def read_version(conn: sa.Connection) -> int:
    """The newest applied version, 0 for an empty database."""
    if not sa.inspect(conn).has_table(schema_version.name):
        return 0
    return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)


def _check_sequence(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must run 1, 2, 3 … without gaps: {versions}")
