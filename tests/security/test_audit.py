"""The audit log on SQLite and Postgres: hash chain, tamper detection, export, concurrency."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json

import pytest
import sqlalchemy as sa

from wayport.core.identity import GENESIS_HASH, Principal, Role
from wayport.service.keys import Security
from wayport.store import SqlStore
from wayport.store.schema import audit_log

pytestmark = pytest.mark.anyio


def admin(tenant: str) -> Principal:
    return Principal(tenant=tenant, role=Role.ADMIN, key_id="abcdefghijkl", user="ana")


async def fill(security: Security, tenant: str, n: int) -> None:
    for i in range(n):
        await security.audit.record(admin(tenant), "agent.edit", target=f"a{i}", details={"i": i})


async def test_entries_chain_and_verify(security: Security, tenant: str) -> None:
    await fill(security, tenant, 5)
    entries = await security.audit.entries(tenant)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert entries[0].actor == "abcdefghijkl:ana"
    assert await security.audit.verify(tenant) == 5
    assert await security.audit.entries("someone-else") == []


async def _sql(store: SqlStore, statement: sa.Executable) -> None:
    """``statement`` run the way an attacker with the database's owner rights would: past the
    append-only triggers (on Postgres switched off for this transaction only, on SQLite, a
    file of this test's own, dropped)."""

    def job(conn: sa.Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        else:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_no_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_log_no_delete")
        conn.execute(statement)

    await store.db.write(job)


@pytest.mark.parametrize("tamper", ["edit", "delete", "delete-first"])
async def test_tampering_is_detected(
    security: Security, store: SqlStore, tenant: str, tamper: str
) -> None:
    await fill(security, tenant, 4)
    where = sa.and_(
        audit_log.c.tenant_id == tenant, audit_log.c.seq == (1 if "first" in tamper else 2)
    )
    if tamper == "edit":
        await _sql(store, sa.update(audit_log).where(where).values(details={"i": 99}))
    else:
        await _sql(store, sa.delete(audit_log).where(where))
    with pytest.raises(ValueError, match="audit entry"):
        await security.audit.verify(tenant)


async def test_export_as_json_lines_and_csv(security: Security, tenant: str) -> None:
    await fill(security, tenant, 3)
    lines = [json.loads(x) async for x in security.audit.export(tenant, fmt="jsonl")]
    assert [x["seq"] for x in lines] == [1, 2, 3] and lines[2]["details"] == {"i": 2}
    text = "".join([x async for x in security.audit.export(tenant, fmt="csv")])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["action"] for r in rows] == ["agent.edit"] * 3
    assert json.loads(rows[1]["details"]) == {"i": 1} and rows[1]["hash"] == lines[1]["hash"]


async def test_concurrent_appends_keep_one_chain(security: Security, tenant: str) -> None:
    await asyncio.gather(
        *(security.audit.record(admin(tenant), "x", details={"n": n}) for n in range(20))
    )
    entries = await security.audit.entries(tenant)
    assert [e.seq for e in entries] == list(range(1, 21))
    assert await security.audit.verify(tenant) == 20
