"""Replicas on one Postgres (and Redis): a run queued on one replica wakes another's worker
through the bus, a session's queue limit counts every replica's runs, a key revoked on one
replica is refused by another within a second, and the cluster closes its Redis limiter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import pytest
import redis.asyncio as aioredis

from wayport.core.agent import AgentSpec, QueueMode
from wayport.core.errors import AuthError, Conflict, RateLimited
from wayport.core.identity import Principal, Role
from wayport.core.limits import Charge, CounterKind, Dimension
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.session import DEFAULT_TENANT, RunStatus
from wayport.models.router import Router
from wayport.service.agents import AgentCatalog, AgentService, Stores
from wayport.service.cluster import Cluster
from wayport.service.gateway import Gateway
from wayport.service.keys import Security
from wayport.store import SqlStore, open_store
from wayport.store.redis_bus import RedisBus
from wayport.store.redis_limiter import RedisLimiter
from wayport.store.session_queue import pending_runs
from wayport.testing import ScriptedBackend
from wayport.testing.models import Reply

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]
AGENTS = [
    AgentSpec(name="queue", model="m", max_queue=2),
    AgentSpec(name="reject", model="m", queue_mode=QueueMode.REJECT),
]


def _gateway() -> Gateway:
    router = Router(
        groups=[ModelGroup(name="m", deployments=(WeightedDeployment(name="m"),))],
        backends={"m": ScriptedBackend("m", default=Reply("done"))},
        policy=RouterPolicy(max_retries=0),
    )
    return Gateway(router=router)


@pytest.fixture
async def replica(postgres_url: str) -> AsyncIterator[Callable[..., object]]:
    """Start an agent service as one replica of a cluster on the scratch database."""
    async with AsyncExitStack() as stack:

        async def start(cluster: Cluster, *, concurrency: int = 64) -> AgentService:
            async def stores() -> Stores:
                opened = await open_store(postgres_url)
                opened.runs.exclusive_sessions = True
                return opened

            gateway = _gateway()
            await gateway.start()
            stack.push_async_callback(gateway.close)
            service = AgentService(
                catalog=AgentCatalog(AGENTS),
                model=gateway,
                open_stores=stores,
                cluster=cluster,
                concurrency=concurrency,
            )
            await service.start()
            stack.push_async_callback(service.close)
            return service

        yield start


async def test_a_run_queued_on_one_replica_is_claimed_by_another_at_once(
    replica: Callable[..., object], redis_url: str, prefix: str
) -> None:
    def cluster() -> Cluster:
        # a poll of an hour: only the bus can wake the worker in time
        return Cluster(bus=RedisBus(redis_url, prefix=prefix), poll_every=3600.0)

    front: AgentService = await replica(cluster(), concurrency=0)  # type: ignore[operator]
    back: AgentService = await replica(cluster())  # type: ignore[operator]
    session = await front.create_session("queue")
    run = await front.submit(session.id, [{"role": "user", "content": "hi"}])
    assert run.status is RunStatus.QUEUED  # the front replica never runs anything
    async with asyncio.timeout(30):  # a hang guard; the poll alone would take an hour
        finished = await front.finished(run.id)
    assert finished.run.status is RunStatus.COMPLETED and back.worker.active == frozenset()


async def test_a_session_queue_counts_the_runs_of_every_replica(
    replica: Callable[..., object],
) -> None:
    # workers that claim nothing: every run stays queued
    a: AgentService = await replica(Cluster(pending=pending_runs), concurrency=0)  # type: ignore[operator]
    b: AgentService = await replica(Cluster(pending=pending_runs), concurrency=0)  # type: ignore[operator]
    hi = [{"role": "user", "content": "hi"}]
    session = await a.create_session("queue")  # max_queue 2: one run plus two waiting
    await a.submit(session.id, hi)
    await b.submit(session.id, hi)
    await a.submit(session.id, hi)
    for service in (a, b):
        with pytest.raises(RateLimited):
            await service.submit(session.id, hi)
    busy = await a.create_session("reject")
    await b.submit(busy.id, hi)
    with pytest.raises(Conflict):
        await a.submit(busy.id, hi)  # the run in progress is on the other replica


async def test_parallel_submits_overflow_by_at_most_one_run_per_other_replica(
    replica: Callable[..., object],
) -> None:
    a: AgentService = await replica(Cluster(pending=pending_runs), concurrency=0)  # type: ignore[operator]
    b: AgentService = await replica(Cluster(pending=pending_runs), concurrency=0)  # type: ignore[operator]
    session = await a.create_session("queue")
    hi = [{"role": "user", "content": "hi"}]
    results = await asyncio.gather(
        *(s.submit(session.id, hi) for _ in range(6) for s in (a, b)), return_exceptions=True
    )
    accepted = [r for r in results if not isinstance(r, BaseException)]
    assert all(isinstance(r, RateLimited) for r in results if isinstance(r, BaseException))
    stored = await pending_runs(a.stores, DEFAULT_TENANT, session.id, 100)
    assert len(stored) == len(accepted)
    assert 3 <= len(accepted) <= 3 + 1  # max_queue + 1, and one more from the other replica


async def test_a_key_revoked_on_one_replica_is_refused_by_another_within_a_second(
    postgres_url: str, redis_url: str, prefix: str
) -> None:
    async with AsyncExitStack() as stack:
        replicas: list[Security] = []
        heard: list[asyncio.Event] = []
        for _ in range(2):
            store: SqlStore = await open_store(postgres_url)
            stack.push_async_callback(store.close)
            cluster = Cluster(bus=RedisBus(redis_url, prefix=prefix))
            security = Security.build(lambda s=store: s, revocations=cluster.revocations())
            cluster.on_revoke(security.keys.forget)
            heard.append(asyncio.Event())
            cluster.on_revoke(lambda _t, _k, e=heard[-1]: e.set())  # after forget: a witness
            assert cluster.bus is not None
            await cluster.bus.start()
            stack.push_async_callback(cluster.close)
            stack.push_async_callback(security.close)
            replicas.append(security)
        a, b = replicas
        owner = Principal(tenant=DEFAULT_TENANT, role=Role.OWNER)
        key, token = await a.keys.create(owner, name="shared")
        assert (await b.keys.authenticate(token)).key_id == key.id  # now cached on b
        await a.keys.revoke(owner, key.id)
        # the broadcast, not b's cache lifetime (60 s), is what reaches b: wait for b to hear
        # it (the time it takes is measured by bench/scale_bench.py, not asserted here)
        await asyncio.wait_for(heard[1].wait(), timeout=30)
        with pytest.raises(AuthError) as refused:
            await b.keys.authenticate(token)
        assert refused.value.code == "api_key_revoked"


async def test_closing_the_cluster_closes_its_redis_limiter(redis_url: str, prefix: str) -> None:
    name = f"wptest-limiter-{prefix.split(':')[1]}"
    limiter = RedisLimiter(f"{redis_url}?client_name={name}", prefix=prefix)
    charge = Charge(key="rpm", kind=CounterKind.RATE, dimension=Dimension.RPM, limit=10, amount=1)
    await limiter.reserve(DEFAULT_TENANT, [charge], now=time.time())
    watcher = aioredis.Redis.from_url(redis_url)
    try:

        async def connected() -> bool:
            return any(c.get("name") == name for c in await watcher.client_list())

        assert await connected()
        await Cluster(limiter=limiter).close()
        deadline = time.monotonic() + 30.0  # polling for a condition; the bound ends a hang
        while await connected():  # the server drops the connection as it sees it close
            assert time.monotonic() < deadline, "the limiter's connection is still open"
            await asyncio.sleep(0.01)
    finally:
        await watcher.aclose()
