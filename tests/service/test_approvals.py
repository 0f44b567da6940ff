"""Tool approval: a run pauses before a tool marked ``requires_approval``, waits (across a
restart), and carries on once a client approves (the tool runs) or denies (the model hears
why, the tool never runs)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from wayport.core.agent import AgentSpec, ToolSpec
from wayport.core.errors import Conflict
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.session import RunStatus
from wayport.core.types import ChatRequest
from wayport.models.router import Router
from wayport.runtime.fallbacks import FunctionTools, RecentHistory
from wayport.service.agents import AgentCatalog, AgentService, Stores
from wayport.store import open_store
from wayport.testing import ScriptedBackend
from wayport.testing.models import Reply, Step

pytestmark = pytest.mark.anyio

DELETE = ToolSpec(
    name="delete_everything",
    parameters={"type": "object", "properties": {"what": {"type": "string"}}},
    requires_approval=True,
)
LOOKUP = ToolSpec(name="lookup", parameters={"type": "object"})


def model(request: ChatRequest) -> Step:
    """Calls both tools, then reports what the last tool results said."""
    last = request.messages[-1]
    if last["role"] == "tool":
        results = [m["content"] for m in request.messages if m["role"] == "tool"]
        return Reply(" | ".join(str(r) for r in results))
    return Reply(
        "",
        tool_calls=[
            {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
            {
                "id": "c2",
                "type": "function",
                "function": {"name": "delete_everything", "arguments": '{"what": "db"}'},
            },
        ],
    )


class Harness:
    def __init__(self, state: Path) -> None:
        self.executed: list[str] = []

        async def delete(arguments: Mapping[str, Any]) -> str:
            self.executed.append("delete_everything")
            return f"deleted {arguments['what']}"

        async def lookup(arguments: Mapping[str, Any]) -> str:
            self.executed.append("lookup")
            return "found it"

        self.tools = FunctionTools(
            {"delete_everything": (DELETE, delete), "lookup": (LOOKUP, lookup)}
        )
        self.state = state

    def service(self) -> AgentService:
        router = Router(
            groups=[ModelGroup(name="m", deployments=(WeightedDeployment(name="m"),))],
            backends={"m": ScriptedBackend("m", script=model)},
            policy=RouterPolicy(max_retries=0),
        )

        async def stores() -> Stores:
            return await open_store(None, state_dir=self.state)

        agent = AgentSpec(name="ops", model="m", tools=("lookup", "delete_everything"))
        return AgentService(
            catalog=AgentCatalog([agent]),
            model=router,
            open_stores=stores,
            tools=self.tools,
            context=lambda sessions: RecentHistory(sessions),
        )


async def paused_run(service: AgentService) -> str:
    session = await service.create_session("ops")
    run = await service.submit(session.id, [{"role": "user", "content": "clean up"}])
    finished = await service.finished(run.id)
    assert finished.run.status is RunStatus.REQUIRES_APPROVAL
    pending = finished.run.output["pending_approval"]  # type: ignore[index,call-overload]
    assert [c["function"]["name"] for c in pending] == ["delete_everything"]
    return run.id


async def test_an_approved_call_runs_after_the_pause_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    first = h.service()
    await first.start()
    try:
        run_id = await paused_run(first)
        assert h.executed == []  # nothing of the batch ran before the decision
    finally:
        await first.close()

    second = h.service()  # a new process: the pause was stored, not held in memory
    await second.start()
    try:
        assert (await second.run(run_id)).status is RunStatus.REQUIRES_APPROVAL
        queued = await second.approve(run_id, approve=True)
        assert queued.status is RunStatus.QUEUED
        done = await second.finished(run_id)
        assert done.run.status is RunStatus.COMPLETED, done.run.error
        assert done.run.output == {"content": "found it | deleted db"}
        assert h.executed == ["lookup", "delete_everything"]
        with pytest.raises(Conflict):
            await second.approve(run_id, approve=True)  # decided once
        history = await second.history(done.run.session_id)
        assert [m.role for m in history] == ["user", "assistant", "tool", "tool", "assistant"]
    finally:
        await second.close()


async def test_a_denied_call_is_answered_with_the_reason_and_never_runs(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    service = h.service()
    await service.start()
    try:
        run_id = await paused_run(service)
        await service.approve(run_id, approve=False, reason="not on a Friday")
        done = await service.finished(run_id)
        assert done.run.status is RunStatus.COMPLETED
        assert h.executed == ["lookup"]
        content = done.run.output["content"]  # type: ignore[index,call-overload]
        assert "denied" in content and "not on a Friday" in content
    finally:
        await service.close()


async def test_cancelling_a_paused_run_closes_its_calls(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    service = h.service()
    await service.start()
    try:
        run_id = await paused_run(service)
        await service.cancel(run_id)
        done = await service.finished(run_id)
        assert done.run.status is RunStatus.CANCELLED
        assert h.executed == []
        history = await service.history(done.run.session_id)
        tools = [m for m in history if m.role == "tool"]
        assert len(tools) == 2 and all("not executed" in str(m.content) for m in tools)
    finally:
        await service.close()
