"""Agent-turn overhead with a zero-latency scripted model, in-process through ``AgentService``
on durable SQLite: p50 per turn and turns/s, and a turn on a 10,000-message session against a
10-message one. Prints JSON.

    taskset -c 0 .venv/bin/python bench/agent_bench.py        # one core, as documented
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from wayport.core.agent import AgentSpec
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.session import DEFAULT_TENANT, NewMessage
from wayport.models.router import Router
from wayport.service.agents import AgentCatalog, AgentService, Stores
from wayport.service.gateway import Gateway
from wayport.store import open_store
from wayport.testing import ScriptedBackend
from wayport.testing.models import Reply

TURNS = 300


async def _turn(service: AgentService, session_id: str) -> float:
    began = time.perf_counter()
    run = await service.submit(session_id, [{"role": "user", "content": "hi"}])
    await service.finished(run.id)
    return time.perf_counter() - began


async def _median_turn(service: AgentService, session_id: str, n: int) -> float:
    return statistics.median([await _turn(service, session_id) for _ in range(n)])


async def bench(state: Path) -> dict[str, object]:
    backend = ScriptedBackend("zero", default=Reply("ok"))
    router = Router(
        groups=[ModelGroup(name="zero", deployments=(WeightedDeployment(name="zero"),))],
        backends={"zero": backend},
        policy=RouterPolicy(max_retries=0),
    )
    gateway = Gateway(router=router)

    async def stores() -> Stores:
        return await open_store(None, state_dir=state)

    service = AgentService(
        catalog=AgentCatalog([AgentSpec(name="a", model="zero")]),
        model=gateway,
        open_stores=stores,
    )
    await gateway.start()
    await service.start()
    try:
        session = await service.create_session("a")
        await _median_turn(service, session.id, 20)  # warm-up
        began = time.perf_counter()
        samples = [await _turn(service, session.id) for _ in range(TURNS)]
        elapsed = time.perf_counter() - began

        small = await service.create_session("a")
        big = await service.create_session("a")
        sessions = service.stores.sessions
        for start in range(0, 10_000, 1000):
            batch = [
                NewMessage(
                    message={
                        "role": "user" if i % 2 == 0 else "assistant",
                        "content": f"message {i}",
                    }
                )
                for i in range(start, start + 1000)
            ]
            await sessions.append(DEFAULT_TENANT, big.id, batch)
        await sessions.append(
            DEFAULT_TENANT,
            small.id,
            [
                NewMessage(
                    message={
                        "role": "user" if i % 2 == 0 else "assistant",
                        "content": f"message {i}",
                    }
                )
                for i in range(10)
            ],
        )
        small_p50 = await _median_turn(service, small.id, 50)
        big_p50 = await _median_turn(service, big.id, 50)
    finally:
        await service.close()
        await gateway.close()
    return {
        "turns": TURNS,
        "turn_p50_ms": round(statistics.median(samples) * 1000, 3),
        "turn_p99_ms": round(statistics.quantiles(samples, n=100)[98] * 1000, 3),
        "turns_per_s": round(TURNS / elapsed, 1),
        "turn_p50_ms_10_messages": round(small_p50 * 1000, 3),
        "turn_p50_ms_10000_messages": round(big_p50 * 1000, 3),
        "ratio_10000_vs_10": round(big_p50 / small_p50, 2),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cpus": sorted(os.sched_getaffinity(0)),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as state:
        print(json.dumps(asyncio.run(bench(Path(state))), indent=2))


if __name__ == "__main__":
    main()
