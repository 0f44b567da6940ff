"""Group commit: many concurrent writers, one transaction and one commit per batch.

A *job* is a plain function of a SQLAlchemy ``Connection`` that issues the statements of one
logical write (an append, a claim, a checkpoint with its messages) and returns a value. SQLite
allows one writer at a time and pays for every commit, so ``GroupCommitWriter`` funnels every job
through one task and one connection: jobs that arrive while a batch is being written queue up and
go into the next transaction together, one commit for all. Batches form from concurrency alone;
nobody waits on a timer, and a lone writer commits at once.

A job that raises rolls its batch back; the batch then runs again without it, so each job keeps
the all-or-nothing outcome it would have had alone, in the order the jobs arrived. A failure of
the database itself (the connection, the disk) fails the whole batch and the connection is
replaced.

The batch runs on the writer's own thread, in one hop from the event loop: the statements run
back to back with the sqlite3 driver, instead of each paying a hop of its own (what an async
driver such as aiosqlite does, about ten times the cost of the statement on small writes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa

from wayport.core.errors import StoreError
from wayport.store.errors import DB_ERRORS, describe, is_connection_error, translate

T = TypeVar("T")
Job = Callable[[sa.Connection], T]

WRITER_OPTION = "wayport_writer"
"""Execution option marking a writer's connection: on SQLite it begins ``BEGIN IMMEDIATE``."""


@dataclass(slots=True)
class WriterStats:
    """Counters for metrics and tests: ``jobs / commits`` is the batching factor."""

    jobs: int = 0  #: jobs committed
    commits: int = 0  #: transactions committed
    retries: int = 0  #: batches run again after one of their jobs failed


@dataclass(slots=True)
class _Pending:
    job: Job[Any]
    future: asyncio.Future[Any]


# what the writer thread reports for each job: its result, or what to raise to its caller
_Outcome = tuple[bool, Any]


class GroupCommitWriter:
    """Batches concurrent jobs into shared transactions on one connection::

        writer = GroupCommitWriter(engine)
        writer.start()
        seq = await writer.submit(append_job)  # returns once its batch is committed
        await writer.close()

    A caller cancelled before its batch starts drops its job; once the batch has started the
    write may still commit (writes are at-least-once; idempotency keys make retries safe).
    """

    def __init__(self, engine: sa.Engine, *, max_batch: int = 256) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        # the connection lives and dies on this one thread
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wayport-writer")
        self._conn: sa.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.stats = WriterStats()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="wayport-store-writer")

    async def submit(self, job: Job[T]) -> T:
        if self._closing or self._task is None or self._task.done():
            raise StoreError("the store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(job, future))
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        """Commit what is queued, then stop. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._drop_connection, False)
        await asyncio.to_thread(self._thread.shutdown)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not (self._closing and not self._queue):
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._queue:
                    batch = self._take()
                    if not batch:
                        continue
                    jobs = [p.job for p in batch]
                    outcomes = await loop.run_in_executor(self._thread, self._commit, jobs)
                    for pending, (ok, value) in zip(batch, outcomes, strict=True):
                        if pending.future.done():  # its caller stopped waiting
                            continue
                        if ok:
                            pending.future.set_result(value)
                        else:
                            pending.future.set_exception(value)
        finally:
            # reached on close, or if the loop itself broke: nobody may wait forever
            for pending in self._queue:
                if not pending.future.done():
                    pending.future.set_exception(StoreError("the store is closed"))
            self._queue.clear()

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        while self._queue and len(batch) < self._max_batch:
            pending = self._queue.popleft()
            if not pending.future.done():  # cancelled before it started: drop it
                batch.append(pending)
        return batch

    # --- on the writer thread ------------------------------------------------------------------

    def _commit(self, jobs: list[Job[Any]]) -> list[_Outcome]:
        outcomes: dict[int, _Outcome] = {}
        todo = list(range(len(jobs)))
        while todo:
            results: list[Any] = []
            try:
                conn = self._connection()
                for i in todo:
                    results.append(jobs[i](conn))
                conn.commit()
            except Exception as exc:  # noqa: BLE001 - each failure is handed to its job's caller
                if len(results) == len(todo) or is_connection_error(exc):
                    # the commit itself or the connection failed: no job of the batch stands
                    self._drop_connection(True)
                    reason = describe(exc)
                    for i in todo:
                        lost = StoreError(f"the write was not committed: {reason}")
                        lost.__cause__ = exc
                        outcomes[i] = (False, lost)
                    break
                self._rollback()
                failed = todo.pop(len(results))
                outcomes[failed] = (False, _caused(translate(exc), exc))
                self.stats.retries += 1
                continue
            outcomes.update((i, (True, r)) for i, r in zip(todo, results, strict=True))
            self.stats.jobs += len(todo)
            self.stats.commits += 1
            break
        return [outcomes[i] for i in range(len(jobs))]

    def _connection(self) -> sa.Connection:
        if self._conn is None:
            self._conn = self._engine.connect().execution_options(**{WRITER_OPTION: True})
        return self._conn

    def _rollback(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.rollback()
        except DB_ERRORS:
            # a connection that cannot even roll back is replaced before the next batch
            self._drop_connection(True)

    def _drop_connection(self, broken: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        # already failing: closing is best effort, invalidate() keeps it out of the pool
        with contextlib.suppress(*DB_ERRORS):
            if broken:
                conn.invalidate()
            conn.close()


def _caused(error: Exception, cause: Exception) -> Exception:
    if error is not cause:
        error.__cause__ = cause
    return error
