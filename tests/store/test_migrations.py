"""Migrations: versioned, idempotent, all-or-nothing, and safe when starters race."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from wayport.core.errors import StoreError
from wayport.store import MIGRATIONS, Database, Migration, open_database
from wayport.store import schema as schema_module
from wayport.store.migrations import schema_version

pytestmark = pytest.mark.anyio

# Version 1 as released. If this fails you changed schema.py: copy these tables into a frozen
# ``_v1`` in migrations.py, add a migration that makes the change, then update this pin.
V1_TABLES = {
    "sessions": "tenant_id id agent agent_version created_at updated_at metadata summary pinned "
    "message_count archived_upto",
    "messages": "tenant_id session_id seq role content name tool_calls tool_call_id tokens "
    "created_at run_id step_no idempotency_key",
    "session_archive": "tenant_id session_id first_seq last_seq message_count codec data "
    "created_at",
    "runs": "tenant_id id session_id status input output error created_at updated_at attempt "
    "claimed_by heartbeat_at agent_version",
    "run_steps": "tenant_id run_id step_no kind payload idempotency_key created_at",
}


def test_version_1_is_pinned() -> None:
    current = {t.name: " ".join(c.name for c in t.columns) for t in schema_module.TENANT_TABLES}
    assert current == V1_TABLES
    assert [m.version for m in MIGRATIONS] == [1]


def tables(conn: sa.Connection) -> dict[str, list[str]]:
    inspector = sa.inspect(conn)
    return {t: [c["name"] for c in inspector.get_columns(t)] for t in inspector.get_table_names()}


def versions(conn: sa.Connection) -> list[int]:
    return [r.version for r in conn.execute(sa.select(schema_version).order_by("version"))]


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("fresh_postgres"))
    return sqlite_url


async def unmigrated(url: str) -> Database:
    return await open_database(url, migrate=False)


async def test_migrating_twice_applies_once(empty_url: str) -> None:
    db = await unmigrated(empty_url)
    assert await db.schema_version() == 0
    assert await db.migrate() == [1]
    assert await db.migrate() == []
    assert await db.schema_version() == 1
    assert await db.read(versions) == [1]
    found = await db.read(tables)
    for table in schema_module.TENANT_TABLES:
        assert found[table.name] == [c.name for c in table.columns]
    await db.close()


async def test_racing_starters_migrate_once(empty_url: str) -> None:
    dbs = [await unmigrated(empty_url) for _ in range(6)]
    applied = await asyncio.gather(*(db.migrate() for db in dbs))
    assert sorted(applied) == [[], [], [], [], [], [1]]
    assert await dbs[0].read(versions) == [1]
    for db in dbs:
        await db.close()


async def test_racing_first_starts_on_a_new_sqlite_file(sqlite_url: str) -> None:
    """Starters on a brand-new file also race to switch it to WAL mode."""
    dbs = await asyncio.gather(*(open_database(sqlite_url) for _ in range(6)))
    assert await dbs[0].read(versions) == [1]
    for db in dbs:
        await db.ping()
        await db.close()


async def test_a_failed_migration_changes_nothing(empty_url: str) -> None:
    db = await open_database(empty_url)

    def half_done(conn: sa.Connection) -> None:
        conn.execute(sa.text("CREATE TABLE half_done (x INTEGER)"))
        conn.execute(sa.text("INSERT INTO no_such_table VALUES (1)"))

    with pytest.raises(StoreError):
        await db.migrate([*MIGRATIONS, Migration(version=2, description="bad", apply=half_done)])
    assert await db.schema_version() == 1
    assert "half_done" not in await db.read(tables)

    def works(conn: sa.Connection) -> None:
        conn.execute(sa.text("CREATE TABLE works (x INTEGER)"))

    fixed = [*MIGRATIONS, Migration(version=2, description="works", apply=works)]
    assert await db.migrate(fixed) == [2]
    assert "works" in await db.read(tables)
    await db.close()


async def test_a_newer_database_is_refused(empty_url: str) -> None:
    db = await unmigrated(empty_url)
    await db.migrate([*MIGRATIONS, Migration(version=2, description="new", apply=lambda c: None)])
    with pytest.raises(StoreError, match="newer"):
        await db.migrate()
    with pytest.raises(StoreError, match="newer"):
        await open_database(empty_url)
    await db.close()


async def test_versions_must_not_have_gaps(sqlite_url: str) -> None:
    db = await unmigrated(sqlite_url)
    gap = [*MIGRATIONS, Migration(version=3, description="skips 2", apply=lambda c: None)]
    with pytest.raises(ValueError, match="without gaps"):
        await db.migrate(gap)
    assert await db.schema_version() == 0
    await db.close()
