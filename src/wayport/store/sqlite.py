"""SQLite, embedded: WAL mode, group commit, reads on a small thread pool.

WAL mode lets readers run while the writer writes. ``synchronous=NORMAL`` (the default) makes
a commit an append to the WAL, synced at checkpoints: durable against a crash of the process (the
operating system holds the appended pages), while a power cut may lose the last commits, never
corrupt the file. ``synchronous="FULL"`` syncs the WAL at every commit: durable against power
loss too, at the price of an fsync per commit (group commit shares it between the jobs of a
batch). The busy timeout makes other processes on the same file wait rather than fail, and
foreign keys on make deletes cascade.

Python's sqlite3 begins transactions only before data changes; Wayport takes over ``BEGIN`` so
every read is a consistent snapshot and the writer takes the write lock up front
(``BEGIN IMMEDIATE``) instead of upgrading mid-transaction, which SQLite may refuse with
``SQLITE_BUSY`` without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import sqlalchemy as sa

from wayport.core.errors import StoreError
from wayport.store.database import Database, json_dumps
from wayport.store.errors import DB_ERRORS, is_connection_error, translated
from wayport.store.writer import WRITER_OPTION, GroupCommitWriter, Job

T = TypeVar("T")

SYNCHRONOUS = ("NORMAL", "FULL")
PRAGMAS = (  # per connection, after synchronous; WAL mode belongs to the file (see enable_wal)
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=ON",
)


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: Path, *, readers: int = 4, synchronous: str = "NORMAL") -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, not {synchronous!r}")
        self.path = path
        self.synchronous = synchronous
        self._engine = sa.create_engine(
            sa.URL.create("sqlite+pysqlite", database=str(path)),
            # connections move between the reader threads (never two at once)
            connect_args={"check_same_thread": False},
            pool_size=readers + 1,
            max_overflow=readers,
            json_serializer=json_dumps,
            json_deserializer=msgspec.json.decode,
        )
        sa.event.listen(self._engine, "connect", functools.partial(_on_connect, synchronous))
        sa.event.listen(self._engine, "begin", _on_begin)
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="wayport-sqlite-read")
        # each reader thread keeps its connection: a checkout from the pool and its reset on
        # return cost more than a primary-key read itself
        self._reader_local = threading.local()
        self._reader_conns: set[sa.Connection] = set()
        self._reader_lock = threading.Lock()
        self._writer = GroupCommitWriter(self._engine)
        self.stats = self._writer.stats

    @classmethod
    async def open(cls, path: Path, *, synchronous: str = "NORMAL") -> SqliteDatabase:
        """Create the file (and its folder) if need be, switch it to WAL, start the writer."""
        await asyncio.to_thread(enable_wal, path)
        db = cls(path, synchronous=synchronous)
        db._writer.start()
        return db

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    async def read(self, job: Job[T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read, job)

    def _read(self, job: Job[T]) -> T:
        with translated():
            conn: sa.Connection | None = getattr(self._reader_local, "conn", None)
            if conn is None:
                conn = self._engine.connect()
                with self._reader_lock:
                    self._reader_conns.add(conn)
                self._reader_local.conn = conn
            try:
                try:
                    return job(conn)
                finally:
                    conn.rollback()  # the snapshot ends: the next read sees the latest commits
            except Exception as exc:
                if is_connection_error(exc):  # replaced before this thread's next read
                    self._reader_local.conn = None
                    with self._reader_lock:
                        self._reader_conns.discard(conn)
                    with contextlib.suppress(*DB_ERRORS):
                        conn.invalidate()
                        conn.close()
                raise

    async def write(self, job: Job[T]) -> T:
        return await self._writer.submit(job)

    async def close(self) -> None:
        await self._writer.close()
        await asyncio.to_thread(self._readers.shutdown)  # waits for reads in flight
        with self._reader_lock:
            held, self._reader_conns = list(self._reader_conns), set()
        for conn in held:
            with contextlib.suppress(*DB_ERRORS):
                conn.close()
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


def _on_connect(synchronous: str, dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # sqlite3's own BEGIN handling off; see _on_begin
    dbapi_conn.execute(f"PRAGMA synchronous={synchronous}")  # one of SYNCHRONOUS
    for pragma in PRAGMAS:
        dbapi_conn.execute(pragma)


def _on_begin(conn: sa.Connection) -> None:
    writer = conn.get_execution_options().get(WRITER_OPTION, False)
    statement = "BEGIN IMMEDIATE" if writer else "BEGIN"
    try:
        # straight to the driver: a transaction's BEGIN is not worth SQLAlchemy's execution
        # machinery, which costs several times the statement on every read and write
        conn.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
    except sqlite3.Error as exc:
        raise sa.exc.OperationalError(statement, None, exc) from exc
