"""``AgentService.finished`` and ``follow`` subscribe to a run's events before they read its
status: a run that finishes between the read and the subscription must not leave the caller
waiting forever. The interleaving is forced with a seam in a store double (its ``get`` pauses
after reading until the test lets it go), not by timing."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from wayport.core.agent import AgentSpec, RunEvent, RunFinished, ToolSpec
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.session import Run, RunStatus
from wayport.core.types import ChatRequest
from wayport.models.router import Router
from wayport.ports import RunStore, SessionStore
from wayport.runtime.fallbacks import FunctionTools, RecentHistory
from wayport.service.agents import AgentCatalog, AgentService
from wayport.testing import MemoryStores, ScriptedBackend
from wayport.testing.models import Reply, Step

pytestmark = pytest.mark.anyio

GUARDED = ToolSpec(name="guarded", parameters={"type": "object"}, requires_approval=True)


def model(request: ChatRequest) -> Step:
    if request.messages[-1]["role"] == "tool":
        return Reply("done")
    call = {"id": "c1", "type": "function", "function": {"name": "guarded", "arguments": "{}"}}
    return Reply("", tool_calls=[call])


class GatedRuns:
    """A ``RunStore`` that delegates to a real one; ``get`` calls made by ``gated_task``
    pause after reading, until ``release`` is set."""

    def __init__(self, inner: RunStore) -> None:
        self._inner = inner
        self.gated_task: asyncio.Task[Any] | None = None
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.seen: list[RunStatus] = []

    async def get(self, tenant: str, run_id: str) -> Run | None:
        found = await self._inner.get(tenant, run_id)
        if self.gated_task is not None and asyncio.current_task() is self.gated_task:
            self.gated_task = None  # the first read only
            assert found is not None
            self.seen.append(found.status)
            self.entered.set()
            await self.release.wait()
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class GatedStores:
    def __init__(self) -> None:
        memory = MemoryStores()
        self.sessions: SessionStore = memory.sessions
        self.gated = GatedRuns(memory.runs)
        self.inner_runs: RunStore = memory.runs

    @property
    def runs(self) -> RunStore:
        return self.gated  # type: ignore[return-value]

    async def close(self) -> None:
        return None


async def _noop(arguments: Mapping[str, Any]) -> str:
    return "ok"


@pytest.fixture
async def harness() -> Any:
    stores = GatedStores()
    router = Router(
        groups=[ModelGroup(name="m", deployments=(WeightedDeployment(name="m"),))],
        backends={"m": ScriptedBackend("m", script=model)},
        policy=RouterPolicy(max_retries=0),
    )

    async def open_stores() -> GatedStores:
        return stores

    service = AgentService(
        catalog=AgentCatalog([AgentSpec(name="ops", model="m", tools=("guarded",))]),
        model=router,
        open_stores=open_stores,
        tools=FunctionTools({"guarded": (GUARDED, _noop)}),
        context=lambda sessions: RecentHistory(sessions),
    )
    await service.start()
    try:
        yield service, stores
    finally:
        await service.close()


async def _approved_run(service: AgentService) -> str:
    """A run that paused for approval (its event channel is gone) and was approved: queued
    again, with no channel open, which is where the race lives."""
    session = await service.create_session("ops")
    run = await service.submit(session.id, [{"role": "user", "content": "go"}])
    paused = await service.finished(run.id)
    assert paused.run.status is RunStatus.REQUIRES_APPROVAL
    assert service.events.get(run.id) is None
    await service.approve(run.id, approve=True)
    return run.id


async def _run_to_the_end(service: AgentService, stores: GatedStores, run_id: str) -> None:
    """While the waiter is paused after its read: the run completes and announces it."""
    await stores.gated.entered.wait()
    while True:  # polling a condition: completed in the store and its task gone
        found = await stores.inner_runs.get("default", run_id)
        assert found is not None
        if found.status is RunStatus.COMPLETED and run_id not in service.worker.active:
            break
        await asyncio.sleep(0.001)
    stores.gated.release.set()


async def test_finished_hears_a_run_that_finishes_between_read_and_subscribe(
    harness: tuple[AgentService, GatedStores],
) -> None:
    service, stores = harness
    run_id = await _approved_run(service)
    waiter = asyncio.create_task(service.finished(run_id))
    stores.gated.gated_task = waiter  # set before the task's first step runs
    await _run_to_the_end(service, stores, run_id)
    assert stores.gated.seen and not stores.gated.seen[0].finished  # the read was stale
    # a guard against hanging forever (the bug), not a timing assertion
    done = await asyncio.wait_for(waiter, timeout=30)
    assert done.run.status is RunStatus.COMPLETED
    assert done.run.output == {"content": "done"}
    assert service.events.get(run_id) is None  # nothing left subscribed


async def test_follow_hears_a_run_that_finishes_between_read_and_subscribe(
    harness: tuple[AgentService, GatedStores],
) -> None:
    service, stores = harness
    run_id = await _approved_run(service)

    async def follow() -> list[RunEvent]:
        return [event async for event in await service.follow(run_id)]

    follower = asyncio.create_task(follow())
    stores.gated.gated_task = follower
    await _run_to_the_end(service, stores, run_id)
    assert stores.gated.seen and not stores.gated.seen[0].finished
    events = await asyncio.wait_for(follower, timeout=30)
    last = events[-1]
    assert isinstance(last, RunFinished) and last.run.status is RunStatus.COMPLETED


async def test_waiters_of_a_finished_run_all_return(
    harness: tuple[AgentService, GatedStores],
) -> None:
    """Several waiters on a finished run, one of them opening the channel the others
    join: none is left on a channel that was dropped."""
    service, _ = harness
    session = await service.create_session("ops")
    run = await service.submit(session.id, [{"role": "user", "content": "go"}])
    await service.finished(run.id)
    results = await asyncio.wait_for(
        asyncio.gather(*(service.finished(run.id) for _ in range(5))), timeout=30
    )
    assert {r.run.status for r in results} == {RunStatus.REQUIRES_APPROVAL}
    assert service.events.get(run.id) is None
