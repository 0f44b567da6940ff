"""The ``UsageStore`` contract: memory, SQLite and Postgres record and add up alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from wayport.core.errors import Conflict
from wayport.core.usage import UsageRecord, totals
from wayport.ports import UsageStore
from wayport.store import open_database
from wayport.store.usage import SqlUsageStore
from wayport.testing.usage import MemoryUsageStore

pytestmark = pytest.mark.anyio

T0 = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC


@pytest.fixture
async def usage(backend: str) -> AsyncIterator[UsageStore]:
    if backend == "memory":
        yield MemoryUsageStore()
        return
    db = await open_database(backend)
    try:
        yield SqlUsageStore(db)
    finally:
        await db.close()


def rec(tenant: str, n: int, **kw: object) -> UsageRecord:
    base: dict[str, object] = {
        "tenant": tenant,
        "id": f"use-{n}",
        "at": T0 + n,
        "kind": "request",
        "model": "gpt-4o-mini",
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "cost": 0.01,
        "latency_ms": 100.0 * n,
    }
    base.update(kw)
    return UsageRecord(**base)  # type: ignore[arg-type]


async def test_records_add_up_per_group(usage: UsageStore, tenant: str) -> None:
    records = [
        rec(tenant, 1, key_id="k1"),
        rec(tenant, 2, key_id="k1", model="qwen", cost=0.5),
        rec(
            tenant,
            3,
            kind="run",
            agent="support",
            run_id="run-1",
            session_id="s1",
            agent_version="v1",
            user="ada",
            status="failed",
        ),
        rec(tenant, 4, at=T0 + 86_400, key_id="k2"),
    ]
    await usage.record(records)
    for group_by in ("model", "agent", "key", "user", "tenant", "session", "run", "kind", "day"):
        found = await usage.totals(tenant, group_by=group_by)
        assert found == pytest.approx(totals(records, group_by)), group_by
    by_model = await usage.totals(tenant, group_by="model")
    assert [(t.group, t.requests, t.runs) for t in by_model] == [
        ("qwen", 1, 0),
        ("gpt-4o-mini", 2, 1),
    ]
    assert by_model[1].prompt_tokens == 300 and by_model[1].cost == pytest.approx(0.03)
    assert by_model[1].latency_ms == pytest.approx((100 + 300 + 400) / 3)
    days = await usage.totals(tenant, group_by="day")
    assert sorted(t.group for t in days) == ["2025-06-15", "2025-06-16"]


async def test_since_and_until(usage: UsageStore, tenant: str) -> None:
    await usage.record([rec(tenant, n) for n in range(1, 6)])
    found = await usage.totals(tenant, group_by="tenant", since=T0 + 2, until=T0 + 4)
    assert [(t.group, t.requests) for t in found] == [(tenant, 2)]
    listed = await usage.records(tenant, since=T0 + 2)
    assert [r.id for r in listed] == ["use-2", "use-3", "use-4", "use-5"]
    assert listed[0] == rec(tenant, 2)
    assert [r.id for r in await usage.records(tenant, limit=2)] == ["use-1", "use-2"]


async def test_tenants_see_only_their_records(usage: UsageStore, tenant: str) -> None:
    other = f"{tenant}-b"
    await usage.record([rec(tenant, 1), rec(other, 1), rec(other, 2)])
    assert [t.requests for t in await usage.totals(tenant, group_by="tenant")] == [1]
    assert [r.tenant for r in await usage.records(other)] == [other, other]
    assert await usage.totals(f"{tenant}-none", group_by="model") == []


async def test_a_batch_is_all_or_nothing(usage: UsageStore, tenant: str) -> None:
    await usage.record([rec(tenant, 1)])
    with pytest.raises(Conflict):
        await usage.record([rec(tenant, 2), rec(tenant, 1)])
    assert [r.id for r in await usage.records(tenant)] == ["use-1"]


async def test_unknown_group_is_refused(usage: UsageStore, tenant: str) -> None:
    with pytest.raises(ValueError, match="group_by"):
        await usage.totals(tenant, group_by="colour")
