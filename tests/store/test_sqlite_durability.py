"""The SQLite durability setting: ``synchronous=NORMAL`` by default (durable against a crash of
the process), ``FULL`` on request (durable against power loss), on every connection."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from wayport.store.sqlite import SqliteDatabase

pytestmark = pytest.mark.anyio

LEVELS = {1: "NORMAL", 2: "FULL"}


def level(conn: sa.Connection) -> str:
    return LEVELS[conn.exec_driver_sql("PRAGMA synchronous").scalar_one()]


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_every_connection_uses_the_setting(tmp_path: Path, synchronous: str) -> None:
    db = await SqliteDatabase.open(tmp_path / "w.db", synchronous=synchronous)
    try:
        assert db.synchronous == synchronous
        assert await db.read(level) == synchronous
        assert await db.write(level) == synchronous  # the writer's own connection
    finally:
        await db.close()


async def test_the_default_is_normal_and_nonsense_is_refused(tmp_path: Path) -> None:
    db = await SqliteDatabase.open(tmp_path / "w.db")
    try:
        assert await db.write(level) == "NORMAL"
    finally:
        await db.close()
    with pytest.raises(ValueError):
        SqliteDatabase(tmp_path / "x.db", synchronous="OFF")
