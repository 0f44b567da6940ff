"""The ``AgentStore`` contract (the admin API's agent definitions): memory, SQLite and Postgres
create, replace, list and delete alike, per tenant, and racing first puts of a name all
succeed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from wayport.core.agent import AgentSpec
from wayport.ports import AgentStore
from wayport.store import open_database
from wayport.store.agents import SqlAgentStore
from wayport.store.database import Database
from wayport.testing import ManualClock
from wayport.testing.agent_store import MemoryAgentStore

pytestmark = pytest.mark.anyio

#: ``open_replica()``: another store on the same data, as a second process would have
OpenReplica = Callable[[], Awaitable[AgentStore]]


@pytest.fixture
async def replicas(backend: str, clock: ManualClock) -> AsyncIterator[OpenReplica]:
    memory = MemoryAgentStore(now=clock.now)
    opened: list[Database] = []

    async def open_replica() -> AgentStore:
        if backend == "memory":
            return memory
        db = await open_database(backend, now=clock.now)
        opened.append(db)
        return SqlAgentStore(db, now=clock.now)

    try:
        yield open_replica
    finally:
        for db in opened:
            await db.close()


@pytest.fixture
async def agents(replicas: OpenReplica) -> AgentStore:
    return await replicas()


def spec(name: str = "support", **kw: object) -> AgentSpec:
    return AgentSpec(name=name, model="m", **kw)  # type: ignore[arg-type]


async def test_put_creates_then_replaces(
    agents: AgentStore, tenant: str, clock: ManualClock
) -> None:
    first = spec(instructions="be brief", tools=("search",), params={"temperature": 0.2})
    created = await agents.put(tenant, first)
    assert (created.spec, created.revision) == (first, 1)
    assert created.created_at == created.updated_at == clock.now()
    assert await agents.get(tenant, "support") == created

    clock.advance(5)
    second = spec(instructions="be thorough")
    replaced = await agents.put(tenant, second)
    assert (replaced.spec, replaced.revision) == (second, 2)
    assert replaced.created_at == created.created_at
    assert replaced.updated_at == created.created_at + 5
    assert await agents.get(tenant, "support") == replaced
    assert (await agents.put(tenant, second)).revision == 3  # the same body still counts


async def test_list_is_by_name_and_get_misses(agents: AgentStore, tenant: str) -> None:
    for name in ("zeta", "alpha", "mid"):
        await agents.put(tenant, spec(name))
    assert [r.spec.name for r in await agents.list(tenant)] == ["alpha", "mid", "zeta"]
    assert await agents.get(tenant, "nope") is None


async def test_delete_forgets_the_revision(agents: AgentStore, tenant: str) -> None:
    await agents.put(tenant, spec())
    await agents.put(tenant, spec(description="v2"))
    assert await agents.delete(tenant, "support") is True
    assert await agents.delete(tenant, "support") is False
    assert await agents.get(tenant, "support") is None
    assert await agents.list(tenant) == []
    again = await agents.put(tenant, spec(description="v3"))
    assert again.revision == 1


async def test_tenants_see_only_their_agents(agents: AgentStore, tenant: str) -> None:
    other = f"{tenant}-b"
    mine = await agents.put(tenant, spec(instructions="mine"))
    assert await agents.get(other, "support") is None
    assert await agents.list(other) == []
    assert await agents.delete(other, "support") is False
    theirs = await agents.put(other, spec(instructions="theirs"))
    assert theirs.revision == 1  # the same name in another tenant is another agent
    assert await agents.get(tenant, "support") == mine
    assert [r.spec.instructions for r in await agents.list(other)] == ["theirs"]
    assert await agents.delete(other, "support") is True
    assert await agents.get(tenant, "support") == mine


@pytest.mark.parametrize("racers", [4])
async def test_racing_first_puts_all_succeed_and_the_last_wins(
    replicas: OpenReplica, tenant: str, racers: int
) -> None:
    stores = [await replicas() for _ in range(racers)]
    for round_no in range(5):
        name = f"raced-{round_no}"
        specs = [spec(name, description=f"from {i}") for i in range(racers)]
        stored = await asyncio.gather(
            *(store.put(tenant, s) for store, s in zip(stores, specs, strict=True))
        )
        assert sorted(r.revision for r in stored) == list(range(1, racers + 1))
        last = max(stored, key=lambda r: r.revision)
        found = await stores[0].get(tenant, name)
        assert found is not None and (found.revision, found.spec) == (racers, last.spec)
