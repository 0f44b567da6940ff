"""Postgres through asyncpg: a pooled transaction per job.

Postgres runs concurrent transactions (and groups their WAL flushes) itself, so writes need no
batching here; row locks and ``FOR UPDATE SKIP LOCKED`` settle races between replicas.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from wayport.store.database import Database, json_dumps
from wayport.store.errors import translated
from wayport.store.writer import Job, WriterStats

T = TypeVar("T")


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, url: sa.URL, *, pool_size: int = 10) -> None:
        self._async_engine = create_async_engine(
            url,
            pool_size=pool_size,
            json_serializer=json_dumps,
            json_deserializer=msgspec.json.decode,
        )
        self.stats = WriterStats()

    @property
    def engine(self) -> sa.Engine:
        return self._async_engine.sync_engine

    async def read(self, job: Job[T]) -> T:
        with translated():
            async with self._async_engine.connect() as conn:
                return await conn.run_sync(job)

    async def write(self, job: Job[T]) -> T:
        with translated():
            async with self._async_engine.begin() as conn:
                result = await conn.run_sync(job)
        self.stats.jobs += 1
        self.stats.commits += 1
        return result

    async def close(self) -> None:
        await self._async_engine.dispose()
