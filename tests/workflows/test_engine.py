"""The engine and service on a real SQLite store: parallel branches, maps, retries, approvals,
timers, sub-workflows, resuming after a stop, and the cron trigger."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import MakeService, Recorder, specs
from wayport.core.errors import Conflict, InvalidRequest, NotFound
from wayport.core.workflow import parse_workflow
from wayport.core.workflow_run import WorkflowRun, WorkflowStatus
from wayport.service.workflows import WorkflowService, WorkflowSpec
from wayport.testing import ManualClock

pytestmark = pytest.mark.anyio
T = "default"


async def finished(service: WorkflowService, run_id: str, tenant: str = T) -> WorkflowRun:
    deadline = time.monotonic() + 20
    while True:
        run = await service.run(tenant, run_id)
        if run.status.finished:
            return run
        assert time.monotonic() < deadline, f"run {run_id} stuck in {run.status}"
        await asyncio.sleep(0.01)  # polling for a condition, not waiting for time


async def status_is(
    service: WorkflowService, run_id: str, status: WorkflowStatus, tenant: str = T
) -> WorkflowRun:
    deadline = time.monotonic() + 20
    while True:
        run = await service.run(tenant, run_id)
        if run.status is status:
            return run
        assert time.monotonic() < deadline, f"run {run_id} is {run.status}, not {status}"
        await asyncio.sleep(0.01)


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait for what an observer is told: it hears of a finished run just after the store
    records it, so a read of the store (``finished``) can come first."""
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)  # polling for a condition


def rec(step_id: str, label: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "tool": {"name": "record", "args": {"label": label}}, **extra}


FANOUT = {
    "inputs": {"items": {"required": True}},
    "steps": [
        rec("start", "start"),
        rec("left", "left", needs="start"),
        rec("right", "right", needs="start"),
        {
            "id": "each",
            "needs": "start",
            "map": {
                "over": "{{ input.items }}",
                "concurrency": 2,
                "step": {"tool": {"name": "echo", "args": {"value": "{{ item }}-{{ index }}"}}},
            },
        },
        {"id": "both", "join": {}, "needs": ["left", "right", "each"]},
    ],
    "output": {"each": "{{ steps.each.output }}", "left": "{{ steps.left.output.label }}"},
}


async def test_parallel_branches_and_map_complete(
    make_service: MakeService, side_effects: Path
) -> None:
    observer = Recorder()
    service = make_service(specs({"fanout": FANOUT}), observer=observer)
    await service.start()
    run = await service.start_run(T, "fanout", {"items": ["a", "b", "c"]})
    done = await finished(service, run.id)
    assert done.status is WorkflowStatus.COMPLETED, done.error
    assert done.output == {"each": ["a-0", "b-1", "c-2"], "left": "left"}
    _, steps = await service.progress(T, run.id)
    assert {s.path: s.status.value for s in steps} == {
        p: "completed"
        for p in ("start", "left", "right", "each", "each[0]", "each[1]", "each[2]", "both")
    }
    assert len(side_effects.read_text().splitlines()) == 3
    assert ("started", run.id, "each[2]") in observer.events
    finish = ("run_completed", run.id, "")
    await eventually(lambda: finish in observer.events, "the observer never heard the end")
    assert observer.events[-1] == finish


async def test_bad_input_and_unknown_workflow_are_refused(make_service: MakeService) -> None:
    service = make_service(specs({"fanout": FANOUT}))
    await service.start()
    with pytest.raises(InvalidRequest, match="needs input items"):
        await service.start_run(T, "fanout", {})
    with pytest.raises(NotFound):
        await service.start_run(T, "nope", {})


async def test_idempotency_key_starts_one_run(
    make_service: MakeService, side_effects: Path
) -> None:
    service = make_service(specs({"one": {"steps": [rec("a", "a")]}}))
    await service.start()
    first = await service.start_run(T, "one", {}, idempotency_key="evt-1")
    again = await service.start_run(T, "one", {}, idempotency_key="evt-1")
    assert first.id == again.id
    await finished(service, first.id)


async def test_retries_with_backoff_then_fail(
    make_service: MakeService, side_effects: Path
) -> None:
    retry = {"max_attempts": 3, "backoff": 0.0}
    flaky = {"name": "flaky", "args": {"name": "f", "failures": 2}}
    wf = {"steps": [{"id": "f", "tool": flaky, "retry": retry}]}
    hopeless = {"name": "flaky", "args": {"name": "h", "failures": 9}}
    bad = {"steps": [{"id": "h", "tool": hopeless, "retry": retry}]}
    service = make_service(specs({"flaky": wf, "hopeless": bad}))
    await service.start()
    ok = await finished(service, (await service.start_run(T, "flaky", {})).id)
    assert (ok.status, ok.output) == (WorkflowStatus.COMPLETED, "f ok after 3")
    failed = await finished(service, (await service.start_run(T, "hopeless", {})).id)
    assert failed.status is WorkflowStatus.FAILED
    assert failed.error == "step h failed: RuntimeError: h failure 3 (after 3 attempts)"


APPROVE = {
    "inputs": ["text"],
    "steps": [
        rec("draft", "draft"),
        {"id": "ok", "approval": {"message": "send {{ input.text }}?"}},
        rec("send", "send", needs=["ok", "draft"]),
    ],
    "output": "{{ steps.ok.output.by }}",
}


async def test_approval_pauses_until_approved(
    make_service: MakeService, side_effects: Path
) -> None:
    service = make_service(specs({"approve": APPROVE}))
    await service.start()
    run = await service.start_run(T, "approve", {"text": "hello"})
    await status_is(service, run.id, WorkflowStatus.WAITING)
    _, steps = await service.progress(T, run.id)
    waiting = {s.path: s for s in steps}["ok"]
    assert (waiting.status.value, waiting.output) == ("waiting", {"message": "send hello?"})
    assert "send" not in side_effects.read_text()
    with pytest.raises(NotFound):
        await service.approve(T, "wfr-nope")
    await service.approve(T, run.id, approved=True, by="ops", comment="fine")
    done = await finished(service, run.id)
    assert (done.status, done.output) == (WorkflowStatus.COMPLETED, "ops")
    assert side_effects.read_text().count(" send\n") == 1
    with pytest.raises(Conflict):
        await service.approve(T, run.id)


async def test_rejection_fails_the_run(make_service: MakeService, side_effects: Path) -> None:
    service = make_service(specs({"approve": APPROVE}))
    await service.start()
    run = await service.start_run(T, "approve", {"text": "x"})
    await status_is(service, run.id, WorkflowStatus.WAITING)
    await service.approve(T, run.id, approved=False, by="ops", comment="tone")
    done = await finished(service, run.id)
    assert done.status is WorkflowStatus.FAILED
    assert done.error == "step ok failed: rejected by ops: tone"
    assert " send\n" not in side_effects.read_text()


async def test_approval_survives_a_restart(make_service: MakeService, side_effects: Path) -> None:
    first = make_service(specs({"approve": APPROVE}))
    await first.start()
    run = await first.start_run(T, "approve", {"text": "x"})
    await status_is(first, run.id, WorkflowStatus.WAITING)
    await first.close()
    second = make_service(specs({"approve": APPROVE}))
    await second.start()
    await second.approve(T, run.id, by="later")
    assert (await finished(second, run.id)).output == "later"
    assert side_effects.read_text().count(" draft\n") == 1


async def test_a_run_finishes_on_the_version_it_started_with(
    make_service: MakeService, side_effects: Path
) -> None:
    v1 = specs({"approve": APPROVE})
    first = make_service(v1)
    await first.start()
    run = await first.start_run(T, "approve", {"text": "x"})
    await status_is(first, run.id, WorkflowStatus.WAITING)
    await first.close()
    changed = {**APPROVE, "output": "v2 {{ steps.ok.output.by }}"}
    second = make_service(specs({"approve": changed}))
    await second.start()
    await second.approve(T, run.id, by="ops")
    done = await finished(second, run.id)
    assert (done.output, done.version) == ("ops", v1[0].definition.version)
    newer = await second.start_run(T, "approve", {"text": "y"})
    await second.approve(T, (await status_is(second, newer.id, WorkflowStatus.WAITING)).id)
    assert (await finished(second, newer.id)).output == "v2 "  # no reviewer named


async def test_wait_timer_is_durable(make_service: MakeService, side_effects: Path) -> None:
    clock = ManualClock(start=1_000.0)
    wf = {"steps": [{"id": "nap", "wait": {"seconds": 60}}, rec("after", "after", needs="nap")]}
    service = make_service(specs({"nap": wf}), engine={"now": clock.now})
    await service.start()
    run = await service.start_run(T, "nap", {})
    parked = await status_is(service, run.id, WorkflowStatus.WAITING)
    assert parked.wake_at == 1_060.0
    clock.advance(60)
    # the store stamps claims with the wall clock, far past 1060: the run is claimable now
    service.engine.wake(T)
    assert (await finished(service, run.id)).status is WorkflowStatus.COMPLETED
    assert "after" in side_effects.read_text()


async def test_sub_workflow(make_service: MakeService, side_effects: Path) -> None:
    child = {"inputs": ["n"], "steps": [rec("c", "child-{{ input.n }}")]}
    parent = {
        "steps": [
            {"id": "sub", "workflow": {"workflow": "child", "input": {"n": 7}}},
            rec("after", "after-{{ steps.sub.output.label }}"),
        ]
    }
    service = make_service(specs({"child": child, "parent": parent}))
    await service.start()
    run = await service.start_run(T, "parent", {})
    done = await finished(service, run.id)
    assert done.status is WorkflowStatus.COMPLETED, done.error
    assert done.output["label"] == "after-child-7"
    kids = [r for r in await service.runs(T, workflow="child")]
    assert [(k.parent_run_id, k.trigger) for k in kids] == [(run.id, "workflow")]


async def test_stopped_engine_resumes_without_repeating_checkpointed_steps(
    make_service: MakeService, side_effects: Path
) -> None:
    slow = {"steps": [rec("a", "a"), rec("b", "b", needs="a"), rec("c", "c", needs="b")]}
    first = make_service(specs({"slow": slow}))
    await first.start()
    run = await first.start_run(T, "slow", {})
    deadline = time.monotonic() + 20
    while " a\n" not in side_effects.read_text():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    await first.close()  # mid-run: whatever was not checkpointed runs again
    second = make_service(specs({"slow": slow}))
    await second.start()
    done = await finished(second, run.id)
    assert done.status is WorkflowStatus.COMPLETED
    lines = side_effects.read_text().splitlines()
    _, steps = await second.progress(T, run.id)
    for step in steps:
        mine = [n for n, line in enumerate(lines, 1) if line.startswith(step.idempotency_key or "")]
        assert step.output["line"] == max(mine), f"{step.path} ran again after its checkpoint"


async def test_cron_trigger_fires(make_service: MakeService, side_effects: Path) -> None:
    from wayport.core.cron import parse_cron

    clock = ManualClock(start=1_767_225_600.0)  # 2026-01-01 00:00 UTC
    definition = parse_workflow("tick", {"inputs": ["scheduled_at"], "steps": [rec("t", "tick")]})
    spec = WorkflowSpec(definition=definition, cron=(parse_cron("*/5 * * * *"),))
    service = make_service([spec], wall=clock.now, sleep=clock.sleep)
    await service.start()
    await asyncio.sleep(0)
    assert service.cron_fired == []
    clock.advance(300)
    deadline = time.monotonic() + 20
    while not service.cron_fired:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert service.cron_fired == [("tick", 1_767_225_900.0)]
    [run] = await service.runs(T, workflow="tick")
    assert (run.trigger, run.input) == ("cron", {"scheduled_at": "2026-01-01T00:05:00+00:00"})
    assert (await finished(service, run.id)).status is WorkflowStatus.COMPLETED


async def test_channel_trigger_and_signed_completion_webhook(
    make_service: MakeService, side_effects: Path
) -> None:
    import json

    from aiohttp import web

    from wayport.net.guard import GuardedClient, GuardPolicy
    from wayport.service.workflows import CompletionHook, sign

    received: asyncio.Queue[tuple[str | None, bytes]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        received.put_nowait((request.headers.get("x-wayport-signature"), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/done", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        definition = parse_workflow("one", {"inputs": ["m"], "steps": [rec("a", "{{ input.m }}")]})
        spec = WorkflowSpec(
            definition=definition,
            on_complete=CompletionHook(url=f"http://127.0.0.1:{port}/done", secret="s3cret"),
        )
        client = GuardedClient(GuardPolicy(allow=("127.0.0.1/32",)))
        service = make_service([spec], client=client)
        await service.start()
        run = await service.start_from_channel(T, "one", {"m": "hi"}, message_id="msg-1")
        again = await service.start_from_channel(T, "one", {"m": "hi"}, message_id="msg-1")
        assert (again.id, run.trigger) == (run.id, "channel")
        signature, body = await asyncio.wait_for(received.get(), 20)
        assert signature == sign("s3cret", body)
        event = json.loads(body)
        assert (event["type"], event["data"]["id"]) == ("workflow.run.finished", run.id)
        assert (event["data"]["status"], event["data"]["output"]["label"]) == ("completed", "hi")
    finally:
        await runner.cleanup()
