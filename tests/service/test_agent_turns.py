"""Agent turns through ``AgentService`` on real SQLite: what a turn writes (two commits: the
run holding the message, then one checkpoint with the answer), the start without the queue,
and a resumed run that keeps the agent version it started with after the agent was edited."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from wayport.core.agent import AgentSpec, ToolSpec
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.session import DEFAULT_TENANT, RunStatus, StepKind
from wayport.core.types import ChatRequest, Message
from wayport.models.router import Router
from wayport.runtime.fallbacks import FunctionTools
from wayport.service.agents import AgentCatalog, AgentService, Stores
from wayport.store import SqlStore, open_store
from wayport.testing import ManualClock, ScriptedBackend
from wayport.testing.models import Reply

pytestmark = pytest.mark.anyio

ADD = ToolSpec(
    name="add",
    parameters={"type": "object", "properties": {"a": {}, "b": {}}, "required": ["a", "b"]},
)


async def _add(arguments: dict[str, int]) -> str:
    return str(arguments["a"] + arguments["b"])


def user(text: str) -> list[Message]:
    return [{"role": "user", "content": text}]


async def eventually(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0)


class Harness:
    def __init__(self, state: Path, spec: AgentSpec, backend: ScriptedBackend) -> None:
        self.store: SqlStore | None = None
        self.backend = backend

        async def stores() -> Stores:
            self.store = await open_store(None, state_dir=state)
            return self.store

        router = Router(
            groups=[ModelGroup(name="m", deployments=(WeightedDeployment(name="m"),))],
            backends={"m": backend},
            policy=RouterPolicy(max_retries=0),
        )
        self.service = AgentService(
            catalog=AgentCatalog([spec]),
            model=router,
            open_stores=stores,
            tools=FunctionTools({"add": (ADD, _add)}),  # type: ignore[dict-item]
        )

    async def __aenter__(self) -> AgentService:
        await self.backend.start()
        await self.service.start()
        return self.service

    async def __aexit__(self, *exc: object) -> None:
        await self.service.close()

    @property
    def commits(self) -> int:
        assert self.store is not None
        return self.store.db.stats.commits


async def test_a_turn_is_two_commits_and_skips_the_queue(tmp_path: Path) -> None:
    spec = AgentSpec(name="a", model="m")
    harness = Harness(tmp_path, spec, ScriptedBackend("m", default=Reply("ok")))
    async with harness as service:
        session = await service.create_session("a")
        await service.finished((await service.submit(session.id, user("warm up"))).id)
        before = harness.commits
        run = await service.submit(session.id, user("hi"))
        # stored claimed by this process's worker, which started it at once
        assert (run.status, run.claimed_by, run.attempt) == (
            RunStatus.RUNNING,
            service.worker.id,
            1,
        )
        finished = await service.finished(run.id)
        assert harness.commits - before == 2  # the run with its input; the answered turn
        assert finished.run.status is RunStatus.COMPLETED
        assert finished.run.output == {"content": "ok"}
        history = await service.history(session.id)
        assert [(m.role, m.content, m.run_id) for m in history[2:]] == [
            ("user", "hi", None),
            ("assistant", "ok", run.id),
        ]
        steps = await service.stores.runs.steps(DEFAULT_TENANT, run.id)
        assert [s.kind for s in steps] == [StepKind.MODEL]


async def test_a_busy_session_queues_and_keeps_the_order(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = ScriptedBackend("m", default=Reply("ok"), delay=1.0, clock=clock)
    async with Harness(tmp_path, AgentSpec(name="a", model="m"), backend) as service:
        session = await service.create_session("a")
        first = await service.submit(session.id, user("one"))
        second = await service.submit(session.id, user("two"))
        assert (first.status, second.status) == (RunStatus.RUNNING, RunStatus.QUEUED)
        await eventually(lambda: clock.pending_sleepers == 1)
        clock.advance(1.0)
        await service.finished(first.id)
        await eventually(lambda: clock.pending_sleepers == 1)
        clock.advance(1.0)
        done = await service.finished(second.id)
        assert done.run.status is RunStatus.COMPLETED and done.run.attempt == 1
        history = await service.history(session.id)
        assert [m.content for m in history] == ["one", "ok", "two", "ok"]


def instructions_of(request: ChatRequest) -> str:
    system = request.messages[0]
    assert system["role"] == "system"
    return str(system["content"])


async def test_a_resumed_run_keeps_its_agent_version_after_an_edit(tmp_path: Path) -> None:
    clock = ManualClock()
    v1 = AgentSpec(name="calc", model="m", instructions="Version one.", tools=("add",))
    v2 = AgentSpec(name="calc", model="m", instructions="Version two.", tools=("add",))
    first = ScriptedBackend(
        "m",
        [Reply("", tool_calls=[_call()])],
        default=Reply("never reached"),
        delay=1.0,
        clock=clock,
    )
    harness = Harness(tmp_path, v1, first)
    service = await harness.__aenter__()
    session = await service.create_session("calc")
    run = await service.submit(session.id, user("1+2?"))
    await eventually(lambda: clock.pending_sleepers == 1)
    clock.advance(1.0)  # the tool call comes back and runs; the second model call hangs
    await eventually(lambda: clock.pending_sleepers == 1 and len(first.calls) == 2)
    await service.worker.abort()  # the crash: the run stays RUNNING, claimed
    assert harness.store is not None
    await harness.store.close()

    # restarted with the agent edited: v2 is the configured one now
    second = ScriptedBackend("m", default=Reply("three"))
    async with Harness(tmp_path, v2, second) as service:
        finished = await service.finished(run.id)
        assert finished.run.status is RunStatus.COMPLETED
        assert finished.run.agent_version == v1.version
        [resumed] = second.calls
        assert "Version one." in instructions_of(resumed)
        assert "Version two." not in instructions_of(resumed)
        # a new run of the session takes the agent as it is now
        later = await service.submit(session.id, user("and now?"))
        assert later.agent_version == v2.version
        await service.finished(later.id)
        assert "Version two." in instructions_of(second.calls[-1])


def _call() -> dict[str, object]:
    return {
        "id": "c1",
        "type": "function",
        "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
    }
