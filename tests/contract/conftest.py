"""One contract suite per store port, run against every implementation: in memory, SQLite and
Postgres. Tests name their tenant with the ``tenant`` fixture, so on the shared Postgres test
database no test sees another's rows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Protocol

import pytest

from scratch_db import scratch_postgres
from wayport.ports import RunStore, SessionStore
from wayport.store import open_store
from wayport.testing import ManualClock
from wayport.testing.stores import MemoryStores


class Stores(Protocol):
    @property
    def sessions(self) -> SessionStore: ...

    @property
    def runs(self) -> RunStore: ...

    async def close(self) -> None: ...


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test session, dropped afterwards."""
    with scratch_postgres() as url:
        yield url


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
