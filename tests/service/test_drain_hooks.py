"""Closing the agent service drains its runs first, then awaits ``on_drained`` while the stores
are still open: the audit trail of a run that finished during the drain is written, not lost
to a closed store (bootstrap hangs the audit log's drain there)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from wayport.core.agent import AgentSpec
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.session import Run, RunStatus
from wayport.models.router import Router
from wayport.service.agents import AgentCatalog, AgentService, Stores
from wayport.store import open_store
from wayport.testing import ManualClock, ScriptedBackend
from wayport.testing.models import Reply

pytestmark = pytest.mark.anyio


async def test_on_drained_runs_after_the_last_run_with_the_stores_open(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = ScriptedBackend("m", default=Reply("late"), delay=5.0, clock=clock)
    router = Router(
        groups=[ModelGroup(name="m", deployments=(WeightedDeployment(name="m"),))],
        backends={"m": backend},
        policy=RouterPolicy(max_retries=0),
    )

    async def stores() -> Stores:
        return await open_store(None, state_dir=tmp_path)

    service = AgentService(
        catalog=AgentCatalog([AgentSpec(name="a", model="m")]),
        model=router,
        open_stores=stores,
    )
    seen: list[Run] = []

    async def after_the_drain() -> None:
        seen.append(await service.run(run.id))  # reads the store: it must still be open

    service.on_drained.append(after_the_drain)
    await service.start()
    session = await service.create_session("a")
    run = await service.submit(session.id, [{"role": "user", "content": "hi"}])
    async with asyncio.timeout(20):
        while clock.pending_sleepers == 0:  # the model call is in flight
            await asyncio.sleep(0.001)  # polling a condition, not timing
    closing = asyncio.create_task(service.close())
    await asyncio.sleep(0)  # the drain has begun; let the model answer now
    clock.advance(5.0)
    await closing
    [finished] = seen
    assert finished.status is RunStatus.COMPLETED
