"""One contract suite per store port, run against every implementation: in memory, SQLite and
Postgres. Tests name their tenant with the ``tenant`` fixture, so on the shared Postgres test
database no test sees another's rows."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Protocol

import asyncpg
import pytest

from wayport.ports import RunStore, SessionStore
from wayport.store import open_store
from wayport.testing import ManualClock
from wayport.testing.stores import (
    POSTGRES_SERVER,
    MemoryStores,
    create_scratch_database,
    drop_scratch_database,
)

PG_SERVER = os.environ.get("WAYPORT_TEST_POSTGRES", POSTGRES_SERVER)


class Stores(Protocol):
    @property
    def sessions(self) -> SessionStore: ...

    @property
    def runs(self) -> RunStore: ...

    async def close(self) -> None: ...


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test session, dropped afterwards."""
    try:
        url = asyncio.run(create_scratch_database(PG_SERVER))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        pytest.skip(f"Postgres not reachable on {PG_SERVER.split('@')[-1]}: {exc}")
    yield url
    asyncio.run(drop_scratch_database(url))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_750_000_000.0)


@pytest.fixture
def tenant() -> str:
    return f"t-{os.urandom(4).hex()}"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('store') / 'wayport.db'}"
    return "memory"


@pytest.fixture
async def stores(backend: str, clock: ManualClock) -> AsyncIterator[Stores]:
    opened: Stores = (
        MemoryStores(now=clock.now)
        if backend == "memory"
        else await open_store(backend, now=clock.now)
    )
    try:
        yield opened
    finally:
        await opened.close()
