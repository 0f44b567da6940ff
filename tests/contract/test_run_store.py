"""The ``RunStore`` contract: memory, SQLite and Postgres behave the same."""

from __future__ import annotations

import asyncio

import pytest

from wayport.core.errors import Conflict, InvalidRequest, NotFound
from wayport.core.session import NewMessage, Run, RunStatus, Session, StepKind
from wayport.testing import ManualClock

from .conftest import Stores

pytestmark = pytest.mark.anyio


def reply(text: str) -> NewMessage:
    return NewMessage(message={"role": "assistant", "content": text})


async def session(stores: Stores, tenant: str) -> Session:
    return await stores.sessions.create(tenant, agent="a")


async def queued(stores: Stores, tenant: str, n: int, clock: ManualClock) -> list[Run]:
    s = await session(stores, tenant)
    runs = []
    for i in range(n):
        runs.append(await stores.runs.create(tenant, session_id=s.id, input={"i": i}))
        clock.advance(1)
    return runs


async def test_create_then_get(stores: Stores, tenant: str, clock: ManualClock) -> None:
    s = await session(stores, tenant)
    run = await stores.runs.create(
        tenant, session_id=s.id, input={"text": "hi"}, agent_version="v7", run_id="run-1"
    )
    assert run == await stores.runs.get(tenant, "run-1")
    assert (run.status, run.attempt, run.claimed_by, run.heartbeat_at) == (
        RunStatus.QUEUED,
        0,
        None,
        None,
    )
    assert (run.input, run.agent_version, run.created_at) == ({"text": "hi"}, "v7", clock.now())
    assert await stores.runs.get(tenant, "run-missing") is None
    with pytest.raises(Conflict):
        await stores.runs.create(tenant, session_id=s.id, run_id="run-1")
    with pytest.raises(NotFound):
        await stores.runs.create(tenant, session_id="sess-missing")
    with pytest.raises(InvalidRequest):
        await stores.runs.create(tenant, session_id=s.id, input={"x": object()})  # type: ignore[dict-item]


async def test_claim_takes_the_oldest_queued_runs(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    runs = await queued(stores, tenant, 3, clock)
    claimed = await stores.runs.claim(tenant, worker="w1", limit=2)
    assert [r.id for r in claimed] == [runs[0].id, runs[1].id]
    for r in claimed:
        assert (r.status, r.claimed_by, r.attempt) == (RunStatus.RUNNING, "w1", 1)
        assert r.heartbeat_at == clock.now()
        assert await stores.runs.get(tenant, r.id) == r
    assert [r.id for r in await stores.runs.claim(tenant, worker="w2", limit=5)] == [runs[2].id]
    assert await stores.runs.claim(tenant, worker="w3") == []


async def test_concurrent_claimers_never_share_a_run(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    runs = await queued(stores, tenant, 24, clock)
    batches = await asyncio.gather(
        *(stores.runs.claim(tenant, worker=f"w{i}", limit=3) for i in range(12))
    )
    claimed = [r.id for batch in batches for r in batch]
    assert sorted(claimed) == sorted(r.id for r in runs)
    for i, batch in enumerate(batches):
        assert all(r.claimed_by == f"w{i}" for r in batch)


async def test_transitions_follow_the_status_machine(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    [run] = await queued(stores, tenant, 1, clock)
    with pytest.raises(Conflict):  # only a running run can complete
        await stores.runs.transition(tenant, run.id, RunStatus.COMPLETED)
    with pytest.raises(ValueError):  # running is entered by claiming only
        await stores.runs.transition(tenant, run.id, RunStatus.RUNNING)
    with pytest.raises(ValueError):  # nothing leaves a finished status
        await stores.runs.transition(
            tenant, run.id, RunStatus.QUEUED, expected=[RunStatus.COMPLETED]
        )
    [run] = await stores.runs.claim(tenant, worker="w1")
    with pytest.raises(Conflict):  # expected narrows the default sources
        await stores.runs.transition(
            tenant, run.id, RunStatus.CANCELLED, expected=[RunStatus.QUEUED]
        )

    clock.advance(3)
    waiting = await stores.runs.transition(tenant, run.id, RunStatus.REQUIRES_ACTION)
    assert (waiting.status, waiting.claimed_by, waiting.heartbeat_at) == (
        RunStatus.REQUIRES_ACTION,
        None,
        None,
    )
    assert waiting.updated_at == clock.now()
    await stores.runs.transition(tenant, run.id, RunStatus.QUEUED)
    [again] = await stores.runs.claim(tenant, worker="w2")
    assert (again.id, again.attempt, again.claimed_by) == (run.id, 2, "w2")

    done = await stores.runs.transition(
        tenant, run.id, RunStatus.COMPLETED, output={"answer": 42}, error=None
    )
    assert (done.status, done.output, done.error) == (RunStatus.COMPLETED, {"answer": 42}, None)
    assert await stores.runs.get(tenant, run.id) == done
    with pytest.raises(Conflict):
        await stores.runs.transition(tenant, run.id, RunStatus.CANCELLED)
    with pytest.raises(NotFound):
        await stores.runs.transition(tenant, "run-missing", RunStatus.CANCELLED)


async def test_failed_runs_keep_their_error(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    [run] = await queued(stores, tenant, 1, clock)
    await stores.runs.claim(tenant, worker="w1")
    failed = await stores.runs.transition(tenant, run.id, RunStatus.FAILED, error="model down")
    assert (failed.status, failed.error, failed.output) == (RunStatus.FAILED, "model down", None)


async def test_heartbeats_belong_to_the_claiming_worker(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    [run] = await queued(stores, tenant, 1, clock)
    with pytest.raises(Conflict):  # queued: nobody holds it
        await stores.runs.heartbeat(tenant, run.id, worker="w1")
    await stores.runs.claim(tenant, worker="w1")
    clock.advance(7)
    beat = await stores.runs.heartbeat(tenant, run.id, worker="w1")
    assert beat.heartbeat_at == clock.now()
    with pytest.raises(Conflict):
        await stores.runs.heartbeat(tenant, run.id, worker="w2")
    await stores.runs.transition(tenant, run.id, RunStatus.CANCELLED)
    with pytest.raises(Conflict):
        await stores.runs.heartbeat(tenant, run.id, worker="w1")
    with pytest.raises(NotFound):
        await stores.runs.heartbeat(tenant, "run-missing", worker="w1")


async def test_stale_runs_go_back_to_the_queue(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    crashed, alive, idle = await queued(stores, tenant, 3, clock)
    await stores.runs.claim(tenant, worker="w1", limit=2)
    clock.advance(30)
    await stores.runs.heartbeat(tenant, alive.id, worker="w1")
    clock.advance(5)

    requeued = await stores.runs.requeue_stale(tenant, stale_before=clock.now() - 10)
    assert [r.id for r in requeued] == [crashed.id]
    assert (requeued[0].status, requeued[0].claimed_by) == (RunStatus.QUEUED, None)
    still = await stores.runs.get(tenant, alive.id)
    assert still is not None and still.status is RunStatus.RUNNING
    assert await stores.runs.requeue_stale(tenant, stale_before=clock.now() - 10) == []

    [retry, never_claimed] = await stores.runs.claim(tenant, worker="w2", limit=2)
    assert (retry.id, retry.attempt) == (crashed.id, 2)
    assert (never_claimed.id, never_claimed.attempt) == (idle.id, 1)
    with pytest.raises(Conflict):  # the old worker lost it
        await stores.runs.heartbeat(tenant, crashed.id, worker="w1")


async def test_unfinished_runs_are_what_a_restart_resumes(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    a, b, c, d, e = await queued(stores, tenant, 5, clock)
    await stores.runs.claim(tenant, worker="w", limit=4)  # a b c d running, e queued
    await stores.runs.transition(tenant, a.id, RunStatus.COMPLETED)
    await stores.runs.transition(tenant, b.id, RunStatus.FAILED)
    await stores.runs.transition(tenant, c.id, RunStatus.REQUIRES_ACTION)
    unfinished = await stores.runs.unfinished(tenant)
    assert [(r.id, r.status) for r in unfinished] == [
        (c.id, RunStatus.REQUIRES_ACTION),
        (d.id, RunStatus.RUNNING),
        (e.id, RunStatus.QUEUED),
    ]
    assert [r.id for r in await stores.runs.unfinished(tenant, limit=1)] == [c.id]


async def test_a_step_and_its_messages_are_stored_together(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    [run] = await queued(stores, tenant, 1, clock)
    await stores.sessions.append(
        tenant, run.session_id, [NewMessage(message={"role": "user", "content": "hi"})]
    )
    await stores.runs.claim(tenant, worker="w1")
    record = await stores.runs.record_step(
        tenant,
        run.id,
        step_no=1,
        kind=StepKind.MODEL,
        payload={"finish_reason": "stop"},
        messages=[reply("hello"), reply("again")],
        idempotency_key="step-1",
        worker="w1",
    )
    assert not record.replayed
    assert (record.step.step_no, record.step.kind, record.step.payload) == (
        1,
        StepKind.MODEL,
        {"finish_reason": "stop"},
    )
    assert [(m.seq, m.run_id, m.step_no) for m in record.messages] == [
        (2, run.id, 1),
        (3, run.id, 1),
    ]
    history = await stores.sessions.history(tenant, run.session_id)
    assert history[1:] == list(record.messages)

    tool = await stores.runs.record_step(
        tenant, run.id, step_no=2, kind=StepKind.TOOL, payload={"result": 1}
    )
    assert tool.messages == ()
    assert await stores.runs.steps(tenant, run.id) == [record.step, tool.step]


async def test_a_completed_step_is_never_recorded_twice(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    [run] = await queued(stores, tenant, 1, clock)
    first = await stores.runs.record_step(
        tenant,
        run.id,
        step_no=1,
        kind=StepKind.MODEL,
        messages=[reply("once")],
        idempotency_key="k1",
    )
    # the same step retried (a lost reply): its first record comes back, nothing is added
    replay = await stores.runs.record_step(
        tenant,
        run.id,
        step_no=1,
        kind=StepKind.MODEL,
        messages=[reply("once")],
        idempotency_key="k1",
    )
    assert replay.replayed
    assert (replay.step, replay.messages) == (first.step, first.messages)
    # a different step under the same number: refused, and its messages are not kept
    for key in ("k2", None):
        with pytest.raises(Conflict):
            await stores.runs.record_step(
                tenant,
                run.id,
                step_no=1,
                kind=StepKind.TOOL,
                messages=[reply("twice")],
                idempotency_key=key,
            )
    history = await stores.sessions.history(tenant, run.session_id)
    assert [m.content for m in history] == ["once"]
    assert await stores.runs.steps(tenant, run.id) == [first.step]


async def test_a_failed_step_leaves_nothing(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    [run] = await queued(stores, tenant, 1, clock)
    unstorable = NewMessage(message={"role": "assistant", "content": [{"x": object()}]})
    with pytest.raises(InvalidRequest):
        await stores.runs.record_step(
            tenant,
            run.id,
            step_no=1,
            kind=StepKind.MODEL,
            messages=[reply("first half"), unstorable],
        )
    assert await stores.runs.steps(tenant, run.id) == []
    assert await stores.sessions.history(tenant, run.session_id) == []
    s = await stores.sessions.get(tenant, run.session_id)
    assert s is not None and s.message_count == 0


async def test_only_the_claiming_worker_records_steps(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    [run] = await queued(stores, tenant, 1, clock)
    with pytest.raises(Conflict):  # not claimed yet
        await stores.runs.record_step(
            tenant, run.id, step_no=1, kind=StepKind.MODEL, worker="w1", messages=[reply("x")]
        )
    await stores.runs.claim(tenant, worker="w1")
    with pytest.raises(Conflict):
        await stores.runs.record_step(
            tenant, run.id, step_no=1, kind=StepKind.MODEL, worker="w2", messages=[reply("x")]
        )
    assert await stores.sessions.history(tenant, run.session_id) == []
    await stores.runs.record_step(tenant, run.id, step_no=1, kind=StepKind.MODEL, worker="w1")
    assert [s.step_no for s in await stores.runs.steps(tenant, run.id)] == [1]


async def test_steps_of_missing_runs(stores: Stores, tenant: str, clock: ManualClock) -> None:
    [run] = await queued(stores, tenant, 1, clock)
    assert await stores.runs.steps(tenant, run.id) == []
    with pytest.raises(NotFound):
        await stores.runs.steps(tenant, "run-missing")
    with pytest.raises(NotFound):
        await stores.runs.record_step(tenant, "run-missing", step_no=1, kind=StepKind.TOOL)
