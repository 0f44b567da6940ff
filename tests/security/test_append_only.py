"""The database itself keeps the audit log append-only (migration 10's triggers), on SQLite and
Postgres: whatever code or person runs ``UPDATE``/``DELETE`` (or ``TRUNCATE``) against it is
refused and nothing changes. Migration 10 also fills ``channel_inbox.sender`` for rows stored
before it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from scratch_db import PG_SERVER
from wayport.core.errors import Conflict
from wayport.core.identity import Principal, Role
from wayport.service.keys import Security
from wayport.store import MIGRATIONS, SqlStore, open_database
from wayport.store.schema import audit_log, channel_inbox
from wayport.testing.stores import create_scratch_database, drop_scratch_database

pytestmark = pytest.mark.anyio


def admin(tenant: str) -> Principal:
    return Principal(tenant=tenant, role=Role.ADMIN, key_id="abcdefghijkl", user="ana")


async def _attempt(store: SqlStore, statement: sa.Executable) -> None:
    def job(conn: sa.Connection) -> None:
        conn.execute(statement)

    await store.db.write(job)


async def test_the_database_refuses_to_change_or_delete_entries(
    security: Security, store: SqlStore, tenant: str
) -> None:
    for i in range(3):
        await security.audit.record(admin(tenant), "agent.edit", target=f"a{i}", details={"i": i})
    before = await security.audit.entries(tenant)
    mine = audit_log.c.tenant_id == tenant
    attempts: list[sa.Executable] = [
        sa.update(audit_log).where(mine, audit_log.c.seq == 2).values(details={"i": 99}),
        sa.update(audit_log).values(actor="nobody"),
        sa.delete(audit_log).where(mine, audit_log.c.seq == 3),
        sa.delete(audit_log),
    ]
    if store.db.dialect == "postgresql":
        attempts.append(sa.text("TRUNCATE audit_log"))
    for statement in attempts:
        with pytest.raises(Conflict, match="append-only"):
            await _attempt(store, statement)
    assert await security.audit.entries(tenant) == before
    assert await security.audit.verify(tenant) == 3
    # appending is untouched
    await security.audit.record(admin(tenant), "agent.edit", target="a3")
    assert [e.seq for e in await security.audit.entries(tenant)] == [1, 2, 3, 4]
    assert await security.audit.verify(tenant) == 4


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    url = await create_scratch_database(PG_SERVER)
    try:
        yield url
    finally:
        await drop_scratch_database(url)


async def test_migration_10_fills_the_sender_of_stored_inbox_rows(empty_url: str) -> None:
    db = await open_database(empty_url, migrate=False)
    try:
        assert await db.migrate(list(MIGRATIONS[:9])) == list(range(1, 10))
        old = sa.table(
            "channel_inbox",
            *(sa.column(c) for c in ("tenant_id", "id", "channel", "message_id", "status")),
            sa.column("payload", sa.JSON),
            sa.column("received_at"),
            sa.column("updated_at"),
        )
        payload = {"channel": "tg", "message_id": "1", "sender": "u-42", "chat": "c", "text": "x"}

        def insert(conn: sa.Connection) -> None:
            conn.execute(
                sa.insert(old).values(
                    tenant_id="acme",
                    id="in-1",
                    channel="tg",
                    message_id="1",
                    status="done",
                    payload=payload,
                    received_at=1.0,
                    updated_at=1.0,
                )
            )

        await db.write(insert)
        assert (await db.migrate())[0] == 10
        senders = await db.read(
            lambda conn: conn.execute(sa.select(channel_inbox.c.id, channel_inbox.c.sender)).all()
        )
        assert [tuple(r) for r in senders] == [("in-1", "u-42")]
    finally:
        await db.close()
