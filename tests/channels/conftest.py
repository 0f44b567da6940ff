"""Channel tests: the channel store on SQLite and on Postgres (a scratch database)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from scratch_db import scratch_postgres
from wayport.ports import ChannelStore
from wayport.store import SqlStore, open_store
from wayport.store.channels import SqlChannelStore
from wayport.testing import ManualClock
from wayport.testing.channel_store import MemoryChannelStore


@pytest.fixture(scope="session")
def channels_postgres_url() -> Iterator[str]:
    with scratch_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("channels_postgres_url"))
    return f"sqlite:///{tmp_path}/wayport.db"


@pytest.fixture
async def sql(store_url: str, clock: ManualClock) -> AsyncIterator[SqlStore]:
    store = await open_store(store_url, now=clock.now)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def channel_store_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("channels_postgres_url"))
    return "memory" if request.param == "memory" else f"sqlite:///{tmp_path}/wayport.db"


@pytest.fixture
async def channel_store(channel_store_url: str, clock: ManualClock) -> AsyncIterator[ChannelStore]:
    """The channel store contract's subjects: in memory, on SQLite, on Postgres."""
    if channel_store_url == "memory":
        yield MemoryChannelStore(now=clock.now)
        return
    store = await open_store(channel_store_url, now=clock.now)
    try:
        yield SqlChannelStore(store.db, now=clock.now)
    finally:
        await store.close()
