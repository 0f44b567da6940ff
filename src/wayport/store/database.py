"""``Database``: what the stores run their SQL through, on SQLite or Postgres.

Store code writes *jobs*, plain functions of a SQLAlchemy ``Connection``, and hands them over::

    def count(conn: sa.Connection) -> int:
        return conn.execute(sa.text("SELECT count(*) FROM sessions")).scalar_one()

    n = await db.read(count)  # a consistent snapshot
    await db.write(append_job)  # atomic: committed whole, or nothing of it stays

The same job runs on both databases: on SQLite in a thread (the sqlite3 driver is synchronous),
on Postgres through SQLAlchemy's asyncio bridge over asyncpg.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import msgspec
import sqlalchemy as sa

from wayport.store.migrations import MIGRATIONS, Migration, apply_migrations, read_version
from wayport.store.writer import Job, WriterStats

T = TypeVar("T")


class Database(ABC):
    dialect: str  #: "sqlite" or "postgresql"
    stats: WriterStats

    @property
    @abstractmethod
    def engine(self) -> sa.Engine:
        """The synchronous engine every statement passes through (for its events)."""

    @abstractmethod
    async def read(self, job: Job[T]) -> T:
        """Run ``job`` in a read transaction, a consistent snapshot, and return its result."""

    @abstractmethod
    async def write(self, job: Job[T]) -> T:
        """Run ``job`` atomically and return its result once committed; if it raises, nothing
        it wrote stays. Raises ``Conflict``, ``StoreError`` or what ``job`` raised."""

    @abstractmethod
    async def close(self) -> None:
        """Finish queued writes, then close every connection. Idempotent."""

    async def ping(self) -> None:
        """Raise ``StoreError`` unless the database answers a query."""
        await self.read(_select_one)

    async def migrate(
        self,
        migrations: Sequence[Migration] = MIGRATIONS,
        *,
        now: Callable[[], float] = time.time,
    ) -> list[int]:
        """Apply the missing migrations (``wayport.store.migrations``); return their versions."""
        return await self.write(partial(apply_migrations, migrations=migrations, now=now))

    async def schema_version(self) -> int:
        """The newest applied migration, 0 for an empty database."""
        return await self.read(read_version)


def _select_one(conn: sa.Connection) -> None:
    conn.execute(sa.text("SELECT 1"))


def json_dumps(value: Any) -> str:
    """JSON columns are encoded by msgspec: several times faster than the json module."""
    return msgspec.json.encode(value).decode()
