"""URLs, SQLite connection settings, and database failures surfacing as ``StoreError``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from wayport.core.errors import ConfigError, StoreError
from wayport.store import open_database, resolve_url

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (None, "sqlite:///state/wayport.db"),
        ("", "sqlite:///state/wayport.db"),
        ("sqlite:///data/w.db", "sqlite:///data/w.db"),
        ("sqlite+aiosqlite:////abs/w.db", "sqlite:////abs/w.db"),
        ("postgresql://u@db:5432/w", "postgresql+asyncpg://u@db:5432/w"),
        ("postgres://u@db/w", "postgresql+asyncpg://u@db/w"),
        ("postgresql+asyncpg://u@db/w", "postgresql+asyncpg://u@db/w"),
    ],
)
def test_urls_resolve_to_the_drivers_wayport_uses(url: str | None, expected: str) -> None:
    assert resolve_url(url, state_dir=Path("state")).render_as_string() == expected


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "mysql://u@db/w", "not a url at all"]
)
def test_unusable_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        resolve_url(url)


async def test_sqlite_runs_with_wal_and_durable_settings(tmp_path: Path) -> None:
    db = await open_database(None, state_dir=tmp_path / "nested" / "state")
    assert (tmp_path / "nested" / "state" / "wayport.db").exists()

    def pragmas(conn: sa.Connection) -> dict[str, object]:
        names = ["journal_mode", "synchronous", "busy_timeout", "foreign_keys"]
        return {n: conn.exec_driver_sql(f"PRAGMA {n}").scalar() for n in names}

    expected = {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 5000, "foreign_keys": 1}
    assert await db.read(pragmas) == expected  # synchronous 1 is NORMAL
    assert await db.write(pragmas) == expected
    await db.ping()
    await db.close()


async def test_reads_are_snapshots(tmp_path: Path) -> None:
    """A read job sees one state of the database even while a write commits in between."""
    db = await open_database(None, state_dir=tmp_path)
    loop = asyncio.get_running_loop()
    await db.write(lambda conn: conn.exec_driver_sql("CREATE TABLE n (x INTEGER)"))
    await db.write(lambda conn: conn.exec_driver_sql("INSERT INTO n VALUES (1)"))

    def insert(conn: sa.Connection) -> None:
        conn.exec_driver_sql("INSERT INTO n VALUES (2)")

    def read_twice(conn: sa.Connection) -> tuple[object, object]:  # on a reader thread
        first = conn.exec_driver_sql("SELECT count(*) FROM n").scalar()
        asyncio.run_coroutine_threadsafe(db.write(insert), loop).result(timeout=60)
        return first, conn.exec_driver_sql("SELECT count(*) FROM n").scalar()

    assert await db.read(read_twice) == (1, 1)
    assert await db.read(lambda conn: conn.exec_driver_sql("SELECT count(*) FROM n").scalar()) == 2
    await db.close()


async def test_an_unopenable_sqlite_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "wayport.db").mkdir()  # a directory where the file should be
    with pytest.raises(StoreError):
        await open_database(None, state_dir=tmp_path)


async def test_an_unreachable_postgres_is_a_store_error() -> None:
    with pytest.raises(StoreError):
        await open_database("postgresql://postgres@127.0.0.1:1/nothing_listens_here")
