"""From a URL to a migrated, ready ``Database``.

    db = await open_database("sqlite:///.wayport/wayport.db")
    db = await open_database("postgresql://wayport@db.internal/wayport")
    db = await open_database(None, state_dir=Path(".wayport"))  # the default SQLite file

``sqlite+aiosqlite://`` and ``postgresql+asyncpg://`` URLs are accepted as they are; SQLite is
always driven by the standard sqlite3 module on Wayport's own threads (see ``writer.py``),
Postgres by asyncpg.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from wayport.core.errors import ConfigError
from wayport.store.database import Database
from wayport.store.postgres import PostgresDatabase
from wayport.store.sqlite import SqliteDatabase

DEFAULT_FILE = "wayport.db"


def resolve_url(url: str | None, *, state_dir: Path = Path(".wayport")) -> sa.URL:
    """The URL Wayport connects with; ``None`` or ``""``: ``state_dir/wayport.db``."""
    if not url:
        return sa.URL.create("sqlite", database=str(state_dir / DEFAULT_FILE))
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"store url {url!r} is not a database URL") from exc
    backend = parsed.drivername.split("+", 1)[0]
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ConfigError(
                "store url: an in-memory SQLite database is not shared between connections; "
                "give a file (sqlite:///path/wayport.db) or use wayport.testing.stores in tests"
            )
        return parsed.set(drivername="sqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise ConfigError(f"store url {parsed.drivername!r}: Wayport stores in sqlite or postgresql")


async def open_database(
    url: str | None,
    *,
    state_dir: Path = Path(".wayport"),
    now: Callable[[], float] = time.time,
    migrate: bool = True,
) -> Database:
    """Connect and bring the schema up to date. Raises ``ConfigError`` for a bad URL,
    ``StoreError`` when the database fails."""
    resolved = resolve_url(url, state_dir=state_dir)
    db: Database
    if resolved.get_backend_name() == "sqlite":
        db = await SqliteDatabase.open(Path(str(resolved.database)))
    else:
        db = PostgresDatabase(resolved)
    if migrate:
        try:
            await db.migrate(now=now)
        except BaseException:
            await db.close()
            raise
    return db
