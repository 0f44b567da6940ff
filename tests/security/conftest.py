"""Security tests run on real databases: SQLite, and Postgres when reachable."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from scratch_db import scratch_postgres
from wayport.service.keys import Security
from wayport.store import SqlStore, open_store
from wayport.testing import ManualClock


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with scratch_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'wayport.db'}"


@pytest.fixture
async def store(db_url: str, clock: ManualClock) -> AsyncIterator[SqlStore]:
    opened = await open_store(db_url, now=clock.now)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def security(store: SqlStore, clock: ManualClock) -> AsyncIterator[Security]:
    built = Security.build(lambda: store, now=clock.now)
    try:
        yield built
    finally:
        await built.close()  # background last-used writes finish before the store closes
