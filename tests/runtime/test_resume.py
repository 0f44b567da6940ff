"""Resuming after a crash keeps the run's deadline: ``run_timeout`` counts from the run's first
start (``Run.started_at``, stored), not from each attempt. Real SQLite, a manual wall clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from wayport.core.agent import AgentSpec, Limits, ToolResult, ToolSpec
from wayport.core.session import Run, RunStatus
from wayport.core.types import Message
from wayport.runtime.events import RunEvents
from wayport.runtime.fallbacks import RecentHistory
from wayport.runtime.lanes import Lanes
from wayport.runtime.runner import Runner, run_input
from wayport.runtime.worker import Worker
from wayport.store import SqlStore, open_store
from wayport.testing import ManualClock, ScriptedBackend
from wayport.testing.models import Reply

from .conftest import T, agent, call, router_for

pytestmark = pytest.mark.anyio

PROBE = ToolSpec(name="probe")


class Probe:
    """A tool registry of one tool that records the time budget each call was given."""

    def __init__(self) -> None:
        self.timeouts: list[float | None] = []

    def specs(self, names: Iterable[str]) -> list[ToolSpec]:
        return [PROBE] if "probe" in names else []

    async def execute(
        self, name: str, arguments_json: str, *, idempotency_key: str, timeout: float | None
    ) -> ToolResult:
        self.timeouts.append(timeout)
        return ToolResult(content="probed")


async def eventually(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0)


def user(text: str) -> Message:
    return {"role": "user", "content": text}


def worker_for(
    store: SqlStore, backend: ScriptedBackend, spec: AgentSpec, clock: ManualClock, tools: Probe
) -> tuple[Worker, RunEvents]:
    runner = Runner(
        model=router_for(backend),
        sessions=store.sessions,
        runs=store.runs,
        tools=tools,
        context=RecentHistory(store.sessions),
        wall=clock.now,
    )

    async def resolve(run: Run) -> AgentSpec:
        return spec

    events = RunEvents()
    worker = Worker(
        runs=store.runs,
        runner=runner,
        resolve=resolve,
        lanes=Lanes(),
        events=events,
        wall=clock.now,
    )
    return worker, events


async def crash_mid_model_call(
    tmp_path: Path, clock: ManualClock, spec: AgentSpec, tools: Probe
) -> Run:
    """Start a run whose first model call hangs, then kill the worker: the run is left
    ``RUNNING`` with its start stored, as a crash leaves it."""
    store = await open_store(None, state_dir=tmp_path, now=clock.now)
    hanging = ScriptedBackend("m", default=Reply("never"), delay=3600.0, clock=clock)
    await hanging.start()
    session = await store.sessions.create(T, agent="calc")
    run = await store.runs.create(T, session_id=session.id, input=run_input([user("go")]))
    worker, _ = worker_for(store, hanging, spec, clock, tools)
    await worker.start()
    worker.wake()
    await eventually(lambda: clock.pending_sleepers == 1)  # the model call is in flight
    stored = await store.runs.get(T, run.id)
    assert stored is not None and stored.started_at == clock.now()
    await worker.abort()
    await store.close()
    return stored


async def test_a_deadline_spent_before_the_crash_fails_the_resumed_run_at_once(
    tmp_path: Path,
) -> None:
    clock = ManualClock(start=1_750_000_000.0)
    spec = agent(limits=Limits(run_timeout=10.0))
    run = await crash_mid_model_call(tmp_path, clock, spec, Probe())
    clock.advance(11.0)  # the process was down longer than the run may take

    store = await open_store(None, state_dir=tmp_path, now=clock.now)
    model = ScriptedBackend("m", default=Reply("too late"))
    await model.start()
    worker, events = worker_for(store, model, spec, clock, Probe())
    channel = events.open(run.id)
    await worker.start()
    finished = await channel.wait()
    await worker.close()
    history = await store.sessions.history(T, run.session_id)
    await store.close()
    assert finished.run.status is RunStatus.FAILED
    assert finished.run.error == "run_timeout (10.0s) reached"
    assert model.calls == []  # no step began after the deadline
    assert [(m.role, m.content) for m in history] == [("user", "go")]  # the input stays


async def test_a_resumed_run_gets_only_what_is_left_of_its_timeout(tmp_path: Path) -> None:
    clock = ManualClock(start=1_750_000_000.0)
    spec = agent(tools=("probe",), limits=Limits(run_timeout=10.0))
    run = await crash_mid_model_call(tmp_path, clock, spec, Probe())
    clock.advance(4.0)

    store = await open_store(None, state_dir=tmp_path, now=clock.now)
    model = ScriptedBackend("m", [Reply("", tool_calls=[call("probe", {})])], default=Reply("ok"))
    await model.start()
    probe = Probe()
    worker, events = worker_for(store, model, spec, clock, probe)
    channel = events.open(run.id)
    await worker.start()
    finished = await channel.wait()
    await worker.close()
    stored = await store.runs.get(T, run.id)
    await store.close()
    assert finished.run.status is RunStatus.COMPLETED
    [budget] = probe.timeouts
    # 10 s from the first start, 4 s of which passed before the resume (a fresh attempt
    # would hand the tool the full 10 s)
    assert budget is not None and 4.0 < budget <= 6.0
    assert stored is not None and stored.started_at == run.started_at and stored.attempt == 2
