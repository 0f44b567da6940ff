"""The usage ledger, written off the hot path: requests append records to a buffer (no I/O,
no await) and one background task writes them in batches, each batch one transaction.

    usage = UsageService(store=SqlUsageStore(db), observer=metrics)
    usage.record(UsageRecord(...))                     # returns at once (starts the writer)
    await usage.totals("acme", group_by="model")       # flushes first: reads what was recorded
    await usage.close()                                # writes what is buffered

A batch the store refuses is logged and dropped rather than retried for ever: the ledger is
accounting, and must never hold up (or take down) the requests it accounts for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Protocol

import structlog

from wayport.core.errors import WayportError
from wayport.core.usage import UsageRecord, UsageTotal, check_group
from wayport.ports import UsageStore

_log = structlog.get_logger("wayport.usage")


class CostObserver(Protocol):
    """Told the cost of every record (``wayport.telemetry.metrics.Metrics`` is one)."""

    def usage_recorded(
        self, model: str, agent: str, prompt_tokens: int, completion_tokens: int, cost: float
    ) -> None: ...


class UsageService:
    def __init__(
        self,
        *,
        store: UsageStore | None = None,
        observer: CostObserver | None = None,
        max_batch: int = 500,
        max_buffer: int = 100_000,
    ) -> None:
        self._store = store
        self._observer = observer
        self._max_batch = max_batch
        self._max_buffer = max_buffer
        self._buffer: list[UsageRecord] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one batch at a time, in order
        self.dropped = 0  #: records lost to a full buffer or a failed write

    def attach(self, store: UsageStore) -> None:
        """Write to ``store`` from now on (the database, once it is open)."""
        self._store = store

    @property
    def store(self) -> UsageStore | None:
        return self._store

    def record(self, record: UsageRecord) -> None:
        if self._observer is not None:
            self._observer.usage_recorded(
                record.model,
                record.agent or "",
                record.prompt_tokens,
                record.completion_tokens,
                record.cost,
            )
        if len(self._buffer) >= self._max_buffer:
            self.dropped += 1
            return
        self._buffer.append(record)
        self._wakeup.set()
        if self._task is None and self._store is not None:
            self._task = asyncio.create_task(self._run(), name="wayport-usage-writer")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()

    async def flush(self) -> None:
        """Write everything buffered now, after any batch the writer task is writing (it left
        the buffer already), so a read after ``flush`` sees every record made before it."""
        async with self._lock:
            pass
        while self._buffer and self._store is not None:
            await self._write_batch()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self.flush()

    async def _write_batch(self) -> None:
        async with self._lock:
            store = self._store
            if not self._buffer or store is None:
                return
            batch = self._buffer[: self._max_batch]
            del self._buffer[: len(batch)]
            try:
                await store.record(batch)
            except WayportError as exc:
                self.dropped += len(batch)
                _log.warning("usage records not written", records=len(batch), error=exc.message)

    async def totals(
        self,
        tenant: str,
        *,
        group_by: str,
        since: float | None = None,
        until: float | None = None,
    ) -> list[UsageTotal]:
        check_group(group_by)
        await self.flush()
        if self._store is None:
            return []
        return await self._store.totals(tenant, group_by=group_by, since=since, until=until)

    async def records(
        self,
        tenant: str,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> Sequence[UsageRecord]:
        await self.flush()
        if self._store is None:
            return []
        return await self._store.records(tenant, since=since, until=until, limit=limit)
