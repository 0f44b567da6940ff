"""SQLite, embedded: WAL mode, group commit, reads on a small thread pool.

WAL mode lets readers run while the writer writes. ``synchronous=NORMAL`` makes a commit an
append to the WAL, synced at checkpoints: a power cut may lose the last commits, never corrupt
the file. The busy timeout makes other processes on the same file wait rather than fail, and
foreign keys on make deletes cascade.

Python's sqlite3 begins transactions only before data changes; Wayport takes over ``BEGIN`` so
every read is a consistent snapshot and the writer takes the write lock up front
(``BEGIN IMMEDIATE``) instead of upgrading mid-transaction, which SQLite may refuse with
``SQLITE_BUSY`` without waiting.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import sqlalchemy as sa

from wayport.core.errors import StoreError
from wayport.store.database import Database, json_dumps
from wayport.store.errors import translated
from wayport.store.writer import WRITER_OPTION, GroupCommitWriter, Job

T = TypeVar("T")

PRAGMAS = (  # per connection; WAL mode belongs to the file (see enable_wal)
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=ON",
)


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: Path, *, readers: int = 4) -> None:
        self.path = path
        self._engine = sa.create_engine(
            sa.URL.create("sqlite+pysqlite", database=str(path)),
            # connections move between the reader threads (never two at once)
            connect_args={"check_same_thread": False},
            pool_size=readers + 1,
            max_overflow=readers,
            json_serializer=json_dumps,
            json_deserializer=msgspec.json.decode,
        )
        sa.event.listen(self._engine, "connect", _on_connect)
        sa.event.listen(self._engine, "begin", _on_begin)
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="wayport-sqlite-read")
        self._writer = GroupCommitWriter(self._engine)
        self.stats = self._writer.stats

    @classmethod
    async def open(cls, path: Path) -> SqliteDatabase:
        """Create the file (and its folder) if need be, switch it to WAL, start the writer."""
        await asyncio.to_thread(enable_wal, path)
        db = cls(path)
        db._writer.start()
        return db

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    async def read(self, job: Job[T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read, job)

    def _read(self, job: Job[T]) -> T:
        with translated(), self._engine.connect() as conn:
            return job(conn)

    async def write(self, job: Job[T]) -> T:
        return await self._writer.submit(job)

    async def close(self) -> None:
        await self._writer.close()
        await asyncio.to_thread(self._readers.shutdown)  # waits for reads in flight
        await asyncio.to_thread(self._engine.dispose)


def enable_wal(path: Path, *, attempts: int = 50) -> None:
    """Put the file in WAL mode, which then holds for every later connection. Blocking.

    Starters racing on a new file may all try the switch at once, and SQLite answers the losers
    "database is locked" at once, busy timeout or not: try again until the file reads as WAL.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create {path.parent}: {exc.strerror}") from exc
    for attempt in range(1, attempts + 1):
        try:
            with closing(sqlite3.connect(path, isolation_level=None)) as conn:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts:
                raise StoreError(f"cannot open {path}: {exc}") from exc
            time.sleep(0.005 * attempt)
            continue
        if mode != "wal":
            raise StoreError(f"SQLite keeps {path} in {mode} journal mode; Wayport needs WAL")
        return


def _on_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # sqlite3's own BEGIN handling off; see _on_begin
    for pragma in PRAGMAS:
        dbapi_conn.execute(pragma)


def _on_begin(conn: sa.Connection) -> None:
    writer = conn.get_execution_options().get(WRITER_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")
