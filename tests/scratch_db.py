"""Scratch Postgres databases for fixtures: each one empty and of its own, dropped afterwards;
the test is skipped when Postgres cannot be reached (a failure under WAYPORT_STRICT_SKIPS=1)::

    @pytest.fixture(scope="session")
    def postgres_url() -> Iterator[str]:
        with scratch_postgres() as url:
            yield url
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from typing import Any, NoReturn, TypeVar

import asyncpg
import pytest

from wayport.testing.stores import (
    POSTGRES_SERVER,
    create_scratch_database,
    drop_scratch_database,
)

T = TypeVar("T")
PG_SERVER = os.environ.get("WAYPORT_TEST_POSTGRES", POSTGRES_SERVER)
_UNREACHABLE = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


def _skip(exc: Exception) -> NoReturn:
    pytest.skip(f"Postgres not reachable on {PG_SERVER.split('@')[-1]}: {exc}")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a loop of its own (the test's loop may be running already)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@contextmanager
def scratch_postgres() -> Iterator[str]:
    """A scratch database's URL, for a synchronous fixture of any scope."""
    try:
        url = _run(create_scratch_database(PG_SERVER))
    except _UNREACHABLE as exc:
        _skip(exc)
    try:
        yield url
    finally:
        _run(drop_scratch_database(url))


@asynccontextmanager
async def scratch_postgres_async() -> AsyncIterator[str]:
    """A scratch database's URL, for an async fixture (on the test's loop)."""
    try:
        url = await create_scratch_database(PG_SERVER)
    except _UNREACHABLE as exc:
        _skip(exc)
    try:
        yield url
    finally:
        await drop_scratch_database(url)
