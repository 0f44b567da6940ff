"""A run paused for approval holds its session: later runs wait (enqueue), are refused
(reject) or cancel the paused one (interrupt), and never land between a tool call and its
result in the history. On SQLite, through the real worker and lanes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from wayport.core.agent import AgentSpec, QueueMode, ToolSpec
from wayport.core.errors import Conflict
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.session import RunStatus, StoredMessage
from wayport.core.types import ChatRequest
from wayport.models.router import Router
from wayport.runtime.fallbacks import FunctionTools, RecentHistory
from wayport.service.agents import AgentCatalog, AgentService, Stores
from wayport.store import open_store
from wayport.testing import ScriptedBackend
from wayport.testing.models import Reply, Step

pytestmark = pytest.mark.anyio

DANGER = ToolSpec(name="danger", parameters={"type": "object"}, requires_approval=True)


def model(request: ChatRequest) -> Step:
    last = request.messages[-1]
    if last["role"] == "tool":
        return Reply(f"tool said: {last['content']}")
    if last.get("content") == "clean up":
        call = {"id": "c1", "type": "function", "function": {"name": "danger", "arguments": "{}"}}
        return Reply("", tool_calls=[call])
    return Reply("hi there")


async def _danger(arguments: Mapping[str, Any]) -> str:
    return "cleaned"


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[AgentService]:
    router = Router(
        groups=[ModelGroup(name="m", deployments=(WeightedDeployment(name="m"),))],
        backends={"m": ScriptedBackend("m", script=model)},
        policy=RouterPolicy(max_retries=0),
    )

    async def stores() -> Stores:
        return await open_store(None, state_dir=tmp_path)

    agents = [
        AgentSpec(name=f"ops-{mode.value}", model="m", tools=("danger",), queue_mode=mode)
        for mode in QueueMode
    ]
    built = AgentService(
        catalog=AgentCatalog(agents),
        model=router,
        open_stores=stores,
        tools=FunctionTools({"danger": (DANGER, _danger)}),
        context=lambda sessions: RecentHistory(sessions),
    )
    await built.start()
    try:
        yield built
    finally:
        await built.close()


async def _paused(service: AgentService, agent: str) -> tuple[str, str]:
    session = await service.create_session(agent)
    run = await service.submit(session.id, [{"role": "user", "content": "clean up"}])
    assert (await service.finished(run.id)).run.status is RunStatus.REQUIRES_APPROVAL
    return session.id, run.id


async def _history(service: AgentService, session_id: str) -> list[StoredMessage]:
    return await service.history(session_id, limit=1000)


def _calls_answered_in_place(history: list[StoredMessage]) -> None:
    """Every assistant tool call is followed at once by the results of all its calls."""
    for i, m in enumerate(history):
        if m.role == "assistant" and m.tool_calls:
            ids = {c["id"] for c in m.tool_calls}
            after = history[i + 1 : i + 1 + len(ids)]
            assert [a.role for a in after] == ["tool"] * len(ids), [x.role for x in history]
            assert {a.tool_call_id for a in after} == ids


async def test_enqueue_waits_for_the_decision(service: AgentService) -> None:
    sid, paused = await _paused(service, "ops-enqueue")
    later = await service.submit(sid, [{"role": "user", "content": "hello"}])
    assert later.status is RunStatus.QUEUED  # not started at once beside a paused run
    # let the worker claim it: it waits in the session's lane instead of running
    while later.id not in service.worker.active:
        if (await service.run(later.id)).status.finished:
            break  # ran beside the paused run: the assertions below fail
        service.worker.wake()
        await asyncio.sleep(0.001)
    assert (await service.run(later.id)).status in (RunStatus.QUEUED, RunStatus.RUNNING)
    assert [m.role for m in await _history(service, sid)] == ["user", "assistant"]

    await service.approve(paused, approve=True)
    first = await service.finished(paused)
    second = await service.finished(later.id)
    assert first.run.status is RunStatus.COMPLETED, first.run.error
    assert second.run.status is RunStatus.COMPLETED, second.run.error
    history = await _history(service, sid)
    _calls_answered_in_place(history)
    assert [(m.role, m.run_id or "") for m in history][-2:] == [
        ("user", ""),
        ("assistant", later.id),
    ]
    assert history[-2].content == "hello"


async def test_reject_refuses_while_paused(service: AgentService) -> None:
    sid, paused = await _paused(service, "ops-reject")
    with pytest.raises(Conflict):
        await service.submit(sid, [{"role": "user", "content": "hello"}])
    await service.approve(paused, approve=False, reason="no")
    assert (await service.finished(paused)).run.status is RunStatus.COMPLETED
    after = await service.submit(sid, [{"role": "user", "content": "hello"}])  # free again
    assert (await service.finished(after.id)).run.status is RunStatus.COMPLETED


async def test_interrupt_cancels_the_paused_run_with_its_calls_answered(
    service: AgentService,
) -> None:
    sid, paused = await _paused(service, "ops-interrupt")
    later = await service.submit(sid, [{"role": "user", "content": "hello"}])
    cancelled = await service.finished(paused)
    assert cancelled.run.status is RunStatus.CANCELLED
    done = await service.finished(later.id)
    assert done.run.status is RunStatus.COMPLETED, done.run.error
    assert done.run.output == {"content": "hi there"}
    history = await _history(service, sid)
    _calls_answered_in_place(history)
    tool = next(m for m in history if m.role == "tool")
    assert "not executed" in str(tool.content)
    assert history[-2].content == "hello"


async def test_deleting_the_session_frees_its_waiting_runs(service: AgentService) -> None:
    sid, _ = await _paused(service, "ops-enqueue")
    later = await service.submit(sid, [{"role": "user", "content": "hello"}])
    while later.id not in service.worker.active:
        service.worker.wake()
        await asyncio.sleep(0.001)
    await service.delete_session(sid)
    while later.id in service.worker.active:  # released, not stuck behind the hold
        await asyncio.sleep(0.001)
    assert service.lanes.pending(f"default/{sid}") == []
