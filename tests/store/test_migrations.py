"""Migrations: versioned, idempotent, all-or-nothing, and safe when starters race."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from wayport.core.errors import StoreError
from wayport.store import MIGRATIONS, Database, Migration, _schema_v1, open_database
from wayport.store import schema as schema_module
from wayport.store.migrations import schema_version

pytestmark = pytest.mark.anyio

# Version 1 as released, frozen in ``_schema_v1.py``: migration 1 must create exactly these.
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


LATEST = MIGRATIONS[-1].version
NEXT = LATEST + 1


def test_version_1_is_frozen() -> None:
    frozen = {
        t.name: " ".join(c.name for c in t.columns) for t in _schema_v1.metadata.sorted_tables
    }
    assert frozen == V1_TABLES
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))


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
    everything = list(range(1, LATEST + 1))
    assert await db.migrate() == everything
    assert await db.migrate() == []
    assert await db.schema_version() == LATEST
    assert await db.read(versions) == everything
    # migrating an empty database yields exactly the tables and columns of schema.py
    found = await db.read(tables)
    found.pop(schema_version.name)
    assert found == {
        t.name: [c.name for c in t.columns] for t in schema_module.metadata.sorted_tables
    }
    await db.close()


async def test_racing_starters_migrate_once(empty_url: str) -> None:
    dbs = [await unmigrated(empty_url) for _ in range(6)]
    applied = await asyncio.gather(*(db.migrate() for db in dbs))
    assert sorted(applied) == [[], [], [], [], [], list(range(1, LATEST + 1))]
    assert await dbs[0].read(versions) == list(range(1, LATEST + 1))
    for db in dbs:
        await db.close()


async def test_racing_first_starts_on_a_new_sqlite_file(sqlite_url: str) -> None:
    """Starters on a brand-new file also race to switch it to WAL mode."""
    dbs = await asyncio.gather(*(open_database(sqlite_url) for _ in range(6)))
    assert await dbs[0].read(versions) == list(range(1, LATEST + 1))
    for db in dbs:
        await db.ping()
        await db.close()


async def test_a_failed_migration_changes_nothing(empty_url: str) -> None:
    db = await open_database(empty_url)

    def half_done(conn: sa.Connection) -> None:
        conn.execute(sa.text("CREATE TABLE half_done (x INTEGER)"))
        conn.execute(sa.text("INSERT INTO no_such_table VALUES (1)"))

    with pytest.raises(StoreError):
        await db.migrate([*MIGRATIONS, Migration(version=NEXT, description="bad", apply=half_done)])
    assert await db.schema_version() == LATEST
    assert "half_done" not in await db.read(tables)

    def works(conn: sa.Connection) -> None:
        conn.execute(sa.text("CREATE TABLE works (x INTEGER)"))

    fixed = [*MIGRATIONS, Migration(version=NEXT, description="works", apply=works)]
    assert await db.migrate(fixed) == [NEXT]
    assert "works" in await db.read(tables)
    await db.close()


async def test_a_newer_database_is_refused(empty_url: str) -> None:
    db = await unmigrated(empty_url)
    await db.migrate(
        [*MIGRATIONS, Migration(version=NEXT, description="new", apply=lambda c: None)]
    )
    with pytest.raises(StoreError, match="newer"):
        await db.migrate()
    with pytest.raises(StoreError, match="newer"):
        await open_database(empty_url)
    await db.close()


async def test_versions_must_not_have_gaps(sqlite_url: str) -> None:
    db = await unmigrated(sqlite_url)
    gap = [*MIGRATIONS, Migration(version=NEXT + 1, description="skips one", apply=lambda c: None)]
    with pytest.raises(ValueError, match="without gaps"):
        await db.migrate(gap)
    assert await db.schema_version() == 0
    await db.close()
