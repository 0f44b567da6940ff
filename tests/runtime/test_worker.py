"""The worker over a real SQLite file: runs through the queue, lanes, interrupts, and a
crash mid-run resumed by a new worker without re-running completed steps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from wayport.core.agent import AgentSpec, QueueMode
from wayport.core.session import Run, RunStatus, StepKind
from wayport.core.types import Message
from wayport.runtime.events import RunEvents
from wayport.runtime.fallbacks import FunctionTools
from wayport.runtime.lanes import Lanes
from wayport.runtime.runner import run_input
from wayport.runtime.worker import Worker
from wayport.store import SqlStore, open_store
from wayport.testing import ManualClock, ScriptedBackend
from wayport.testing.models import Reply

from .conftest import ADD, T, agent, call, make_runner, router_for

pytestmark = pytest.mark.anyio


def user(text: str) -> Message:
    return {"role": "user", "content": text}


async def eventually(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0)


def make_worker(
    store: SqlStore, backend: ScriptedBackend, registry: FunctionTools, spec: AgentSpec
) -> tuple[Worker, RunEvents]:
    router = router_for(backend)
    runner = make_runner(router, store.sessions, store.runs, registry)
    events = RunEvents()

    async def resolve(run: Run) -> AgentSpec:
        return spec

    worker = Worker(runs=store.runs, runner=runner, resolve=resolve, lanes=Lanes(), events=events)
    return worker, events


async def test_crash_mid_run_resumes_without_rerunning_steps(tmp_path: Path) -> None:
    executed: list[str] = []

    async def add(arguments: Mapping[str, Any]) -> str:
        executed.append("add")
        return str(arguments["a"] + arguments["b"])

    clock = ManualClock()
    first = ScriptedBackend(
        "m",
        [Reply("", tool_calls=[call("add", {"a": 1, "b": 2})])],
        default=Reply("never reached"),
        delay=1.0,
        clock=clock,
    )
    store = await open_store(None, state_dir=tmp_path)
    session = await store.sessions.create(T, agent="calc")
    msgs = [user("1+2?")]
    run = await store.runs.create(T, session_id=session.id, input=run_input(msgs))
    registry = FunctionTools({"add": (ADD, add)})
    worker, _ = make_worker(store, first, registry, agent())
    await first.start()
    await worker.start()
    worker.wake()
    await eventually(lambda: clock.pending_sleepers == 1)
    clock.advance(1.0)  # the first model call answers: a tool call
    await eventually(lambda: clock.pending_sleepers == 1 and len(first.calls) == 2)
    # the second model call hangs; the model step and the tool step are checkpointed
    assert [s.kind for s in await store.runs.steps(T, run.id)] == [StepKind.MODEL, StepKind.TOOL]
    await worker.abort()  # the crash: nothing is given back
    await store.close()
    assert executed == ["add"]

    store = await open_store(None, state_dir=tmp_path)
    second = ScriptedBackend("m", default=Reply("three"))
    await second.start()
    worker, events = make_worker(store, second, registry, agent())
    channel = events.open(run.id)
    await worker.start()
    finished = await channel.wait()
    await worker.close()
    assert finished.run.status is RunStatus.COMPLETED
    assert finished.run.output == {"content": "three"}
    assert len(second.calls) == 1  # only the step that had not finished
    assert executed == ["add"]  # the recorded tool step was not executed again
    history = await store.sessions.history(T, session.id)
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
    stored = await store.runs.get(T, run.id)
    assert stored is not None and stored.attempt == 2
    await store.close()


async def test_interrupt_cancels_the_running_run_at_a_safe_point(tmp_path: Path) -> None:
    clock = ManualClock()
    backend = ScriptedBackend(
        "m",
        [Reply("", tool_calls=[call("add", {"a": 1, "b": 1})])],
        default=Reply("ok"),
        delay=1.0,
        clock=clock,
    )
    await backend.start()
    store = await open_store(None, state_dir=tmp_path)
    registry = FunctionTools({"add": (ADD, lambda a: asyncio.sleep(0, result="2"))})
    worker, events = make_worker(store, backend, registry, agent(queue_mode=QueueMode.INTERRUPT))
    await worker.start()
    session = await store.sessions.create(T, agent="calc")
    r1 = await store.runs.create(
        T, session_id=session.id, input=run_input([{"role": "user", "content": "a"}])
    )  # type: ignore[list-item]
    c1 = events.open(r1.id)
    worker.wake()
    await eventually(lambda: clock.pending_sleepers == 1)
    assert worker.cancel(r1.id)
    r2 = await store.runs.create(
        T, session_id=session.id, input=run_input([{"role": "user", "content": "b"}])
    )  # type: ignore[list-item]
    c2 = events.open(r2.id)
    worker.wake()
    clock.advance(1.0)  # r1's model call returns a tool call: not executed, r1 cancelled
    first = await c1.wait()
    await eventually(lambda: clock.pending_sleepers == 1)
    clock.advance(1.0)
    second = await c2.wait()
    await worker.close()
    await store.close()
    assert first.run.status is RunStatus.CANCELLED
    assert second.run.status is RunStatus.COMPLETED
    assert registry.calls == []
