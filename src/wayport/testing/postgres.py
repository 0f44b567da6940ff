"""Scratch Postgres databases for tests (re-exported by ``wayport.testing.stores``)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import asyncpg

POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"


async def create_scratch_database(server: str = POSTGRES_SERVER) -> str:
    """Create an empty database ``wayport_test_<random>`` on ``server`` (a libpq URL without a
    database) and return its SQLAlchemy URL. Raises ``OSError`` or an ``asyncpg`` error when the
    server cannot be reached::

        url = await create_scratch_database()
        try:
            store = await open_store(url)
            ...
        finally:
            await drop_scratch_database(url)
    """
    name = f"wayport_test_{os.urandom(6).hex()}"
    conn = await asyncpg.connect(_with_database(server, "postgres"), timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _with_database(server, name).replace("postgresql://", "postgresql+asyncpg://", 1)


async def drop_scratch_database(url: str) -> None:
    """Drop a database ``create_scratch_database`` made, closing any connection still open."""
    parts = urlsplit(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    name = parts.path.lstrip("/")
    if not name.startswith("wayport_test_"):
        raise ValueError(f"refusing to drop {name!r}: not a scratch database")
    conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _with_database(server: str, name: str) -> str:
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
