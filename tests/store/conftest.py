from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from scratch_db import scratch_postgres_async


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/wayport.db"


@pytest.fixture
async def fresh_postgres() -> AsyncIterator[str]:
    """An empty database of its own (migrations tests need one nobody has migrated yet)."""
    async with scratch_postgres_async() as url:
        yield url
