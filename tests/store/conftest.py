from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
import pytest

from wayport.testing import ManualClock
from wayport.testing.stores import POSTGRES_SERVER, create_scratch_database, drop_scratch_database

PG_SERVER = os.environ.get("WAYPORT_TEST_POSTGRES", POSTGRES_SERVER)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_750_000_000.0)


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/wayport.db"


@pytest.fixture
async def fresh_postgres() -> AsyncIterator[str]:
    """An empty database of its own (migrations tests need one nobody has migrated yet)."""
    try:
        url = await create_scratch_database(PG_SERVER)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        pytest.skip(f"Postgres not reachable on {PG_SERVER.split('@')[-1]}: {exc}")
    try:
        yield url
    finally:
        await drop_scratch_database(url)
