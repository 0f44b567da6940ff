"""The batched ``RunStore`` methods of agent turns: ``create(worker=…)``, ``checkpoint`` and
pinned agent versions; memory, SQLite and Postgres behave the same."""

from __future__ import annotations

import pytest

from wayport.core.agent import AgentSpec, Limits, QueueMode
from wayport.core.errors import Conflict, NotFound
from wayport.core.session import NewMessage, NewStep, Run, RunEnd, RunStatus, StepKind
from wayport.testing import ManualClock

from .conftest import Stores

pytestmark = pytest.mark.anyio


def user(text: str, key: str | None = None) -> NewMessage:
    return NewMessage(message={"role": "user", "content": text}, idempotency_key=key)


def answer(step_no: int, text: str, key: str = "k") -> NewStep:
    return NewStep(
        step_no=step_no,
        kind=StepKind.MODEL,
        payload={"content": text},
        messages=[NewMessage(message={"role": "assistant", "content": text}, tokens=3)],
        idempotency_key=f"{key}:{step_no}",
    )


async def started(stores: Stores, tenant: str, worker: str = "w1") -> Run:
    s = await stores.sessions.create(tenant, agent="a")
    return await stores.runs.create(tenant, session_id=s.id, input={"x": 1}, worker=worker)


async def test_create_claimed_skips_the_queue(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    run = await started(stores, tenant)
    assert (run.status, run.claimed_by, run.attempt) == (RunStatus.RUNNING, "w1", 1)
    assert run.started_at == run.heartbeat_at == clock.now()
    assert await stores.runs.get(tenant, run.id) == run
    assert await stores.runs.claim(tenant, worker="w2") == []  # nothing queued
    # a crashed worker's claimed run is requeued like any other, keeping its start
    clock.advance(100)
    [requeued] = await stores.runs.requeue_stale(tenant, stale_before=clock.now())
    assert (requeued.status, requeued.started_at) == (RunStatus.QUEUED, run.started_at)


async def test_one_checkpoint_stores_a_whole_turn(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    run = await started(stores, tenant)
    clock.advance(1)
    end = RunEnd(status=RunStatus.COMPLETED, output={"content": "hello"})
    saved = await stores.runs.checkpoint(
        tenant,
        run.id,
        inbound=[user("hi", f"{run.id}:in:0")],
        steps=[answer(1, "hello")],
        end=end,
        worker="w1",
    )
    assert [(m.seq, m.role, m.run_id, m.step_no) for m in saved.inbound] == [
        (1, "user", None, None)
    ]
    [record] = saved.steps
    assert (record.step.step_no, record.replayed) == (1, False)
    assert [(m.seq, m.content, m.run_id, m.step_no) for m in record.messages] == [
        (2, "hello", run.id, 1)
    ]
    final = saved.run
    assert (final.status, final.output, final.claimed_by, final.heartbeat_at) == (
        RunStatus.COMPLETED,
        {"content": "hello"},
        None,
        None,
    )
    assert (final.updated_at, final.started_at) == (clock.now(), run.started_at)
    assert await stores.runs.get(tenant, run.id) == final
    history = await stores.sessions.history(tenant, run.session_id)
    assert history == [*saved.inbound, *record.messages]
    [step] = await stores.runs.steps(tenant, run.id)
    assert step == record.step
    session = await stores.sessions.get(tenant, run.session_id)
    assert session is not None and session.message_count == 2


async def test_a_refused_checkpoint_stores_nothing(stores: Stores, tenant: str) -> None:
    run = await started(stores, tenant)
    await stores.runs.checkpoint(tenant, run.id, steps=[answer(1, "one")])
    inbound = [user("late", "in-late")]
    with pytest.raises(Conflict):  # step 1 is taken, under another key
        await stores.runs.checkpoint(
            tenant, run.id, inbound=inbound, steps=[answer(1, "two", key="other")]
        )
    with pytest.raises(Conflict):  # another worker's claim
        await stores.runs.checkpoint(tenant, run.id, inbound=inbound, worker="w2")
    with pytest.raises(NotFound):
        await stores.runs.checkpoint(tenant, "run-missing", inbound=inbound)
    with pytest.raises(NotFound):  # another tenant's run is a missing one
        await stores.runs.checkpoint(f"{tenant}-x", run.id, inbound=inbound)
    await stores.runs.transition(tenant, run.id, RunStatus.CANCELLED)
    with pytest.raises(Conflict):  # no longer running
        await stores.runs.checkpoint(tenant, run.id, inbound=inbound)
    history = await stores.sessions.history(tenant, run.session_id)
    assert [m.content for m in history] == ["one"]
    assert [s.step_no for s in await stores.runs.steps(tenant, run.id)] == [1]


async def test_a_retried_checkpoint_is_replayed(stores: Stores, tenant: str) -> None:
    run = await started(stores, tenant)
    inbound = [user("hi", "in-0")]
    first = await stores.runs.checkpoint(tenant, run.id, inbound=inbound, steps=[answer(1, "a")])
    again = await stores.runs.checkpoint(tenant, run.id, inbound=inbound, steps=[answer(1, "a")])
    assert again.inbound == first.inbound
    assert again.steps[0].replayed and again.steps[0].messages == first.steps[0].messages
    assert again.steps[0].step == first.steps[0].step
    assert len(await stores.sessions.history(tenant, run.session_id)) == 2
    # a replayed step beside a new one: only the new one is stored
    both = await stores.runs.checkpoint(tenant, run.id, steps=[answer(1, "a"), answer(2, "b")])
    assert [r.replayed for r in both.steps] == [True, False]
    assert [m.seq for m in both.steps[1].messages] == [3]


async def test_started_at_is_kept_and_a_wait_for_the_client_clears_it(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    s = await stores.sessions.create(tenant, agent="a")
    await stores.runs.create(tenant, session_id=s.id)
    [run] = await stores.runs.claim(tenant, worker="w1")
    assert run.started_at is None  # claimed, not yet begun
    began = clock.now()
    first = await stores.runs.checkpoint(tenant, run.id, started_at=began, worker="w1")
    assert first.run.started_at == began
    clock.advance(5)
    later = await stores.runs.checkpoint(tenant, run.id, started_at=clock.now(), worker="w1")
    assert later.run.started_at == began  # the first start stands
    paused = await stores.runs.checkpoint(
        tenant, run.id, end=RunEnd(status=RunStatus.REQUIRES_APPROVAL, output={"p": 1})
    )
    assert (paused.run.status, paused.run.started_at) == (RunStatus.REQUIRES_APPROVAL, None)
    with pytest.raises(ValueError):
        await stores.runs.checkpoint(tenant, run.id, end=RunEnd(status=RunStatus.RUNNING))


async def test_failed_end_with_closing_steps_and_inbound(stores: Stores, tenant: str) -> None:
    run = await started(stores, tenant)
    closing = NewStep(
        step_no=2,
        kind=StepKind.TOOL,
        payload={"closing": True},
        messages=[
            NewMessage(message={"role": "tool", "tool_call_id": "c1", "content": "not executed"})
        ],
        idempotency_key="c:2",
    )
    saved = await stores.runs.checkpoint(
        tenant,
        run.id,
        inbound=[user("hi", "in-0")],
        steps=[closing],
        end=RunEnd(status=RunStatus.FAILED, error="run_timeout (1s) reached"),
    )
    assert (saved.run.status, saved.run.error, saved.run.output) == (
        RunStatus.FAILED,
        "run_timeout (1s) reached",
        None,
    )
    history = await stores.sessions.history(tenant, run.session_id)
    assert [(m.role, m.step_no) for m in history] == [("user", None), ("tool", 2)]


async def test_pinned_agent_versions(stores: Stores, tenant: str) -> None:
    v1 = AgentSpec(
        name="support",
        model="m",
        instructions="Be brief.",
        tools=("lookup",),
        params={"temperature": 0, "stop": ["\n"]},
        limits=Limits(run_timeout=30),  # an int in a float field hashes as an int
        queue_mode=QueueMode.INTERRUPT,
    )
    v2 = AgentSpec(name="support", model="m", instructions="Be verbose.")
    assert await stores.runs.pinned_agent(tenant, "support", v1.version) is None
    await stores.runs.pin_agent(tenant, v1)
    await stores.runs.pin_agent(tenant, v1)  # once per version; again is a no-op
    await stores.runs.pin_agent(tenant, v2)
    got = await stores.runs.pinned_agent(tenant, "support", v1.version)
    assert got == v1 and got is not None and got.version == v1.version
    assert await stores.runs.pinned_agent(tenant, "support", v2.version) == v2
    assert await stores.runs.pinned_agent(tenant, "other", v1.version) is None
    assert await stores.runs.pinned_agent(f"{tenant}-x", "support", v1.version) is None
