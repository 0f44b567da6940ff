"""``SqlWorkflowStore`` on SQLite and Postgres: idempotent creation, exclusive claims (``SKIP
LOCKED`` on Postgres), claim-guarded checkpoints, parking against outside resolutions, stale
sweeps, tenant isolation; and the whole engine on Postgres."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from test_engine import finished, status_is

from conftest import MakeService, specs
from wayport.core.errors import Conflict, NotFound
from wayport.core.workflow_plan import StepStatus
from wayport.core.workflow_run import StepRow, WorkflowStatus
from wayport.store.workflows import SqlWorkflows, open_workflow_store
from wayport.testing import ManualClock
from wayport.testing.stores import POSTGRES_SERVER, create_scratch_database, drop_scratch_database

pytestmark = pytest.mark.anyio
PG_SERVER = os.environ.get("WAYPORT_TEST_POSTGRES", POSTGRES_SERVER)
DEF = {"steps": [{"id": "a", "approval": {}}]}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/wf.db"
        return
    try:
        url = await create_scratch_database(PG_SERVER)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        pytest.skip(f"Postgres not reachable: {exc}")
    try:
        yield url
    finally:
        await drop_scratch_database(url)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_000.0)


@pytest.fixture
async def store(db_url: str, tmp_path: Path, clock: ManualClock) -> AsyncIterator[SqlWorkflows]:
    opened = await open_workflow_store(db_url, state_dir=tmp_path, now=clock.now)
    try:
        yield opened
    finally:
        await opened.close()


def _row(path: str, status: StepStatus = StepStatus.RUNNING) -> StepRow:
    return StepRow(path=path, step_id=path, kind="approval", status=status, attempt=1)


async def _create(s: SqlWorkflows, tenant: str, run_id: str) -> None:
    await s.workflows.create_run(
        tenant, run_id=run_id, workflow="w", version="v1", definition=DEF, input={"x": 1}
    )


async def test_create_is_idempotent_and_tenant_scoped(store: SqlWorkflows) -> None:
    w = store.workflows
    _, created = await w.create_run("t1", run_id="r1", workflow="w", version="v1", definition=DEF)
    again, second = await w.create_run("t1", run_id="r1", workflow="w", version="v9", definition={})
    assert (created, second, again.version) == (True, False, "v1")
    assert await w.definition("t1", "w", "v1") == DEF
    assert await w.get("t2", "r1") is None
    assert await w.list_runs("t2") == []
    assert [r.id for r in await w.list_runs("t1")] == ["r1"]
    assert await w.active_tenants() == ["t1"]


async def test_claims_are_exclusive(store: SqlWorkflows) -> None:
    for i in range(20):
        await _create(store, "t", f"r{i:02}")
    batches = await asyncio.gather(
        *(store.workflows.claim("t", worker=f"w{i}", limit=3) for i in range(10))
    )
    claimed = [r.id for batch in batches for r in batch]
    assert sorted(claimed) == [f"r{i:02}" for i in range(20)]  # every run once, none twice
    assert all(r.status is WorkflowStatus.RUNNING and r.attempt == 1 for b in batches for r in b)


async def test_checkpoints_need_the_claim(store: SqlWorkflows) -> None:
    w = store.workflows
    await _create(store, "t", "r")
    await w.claim("t", worker="w1")
    await w.save_steps("t", "r", [_row("a")], worker="w1")
    with pytest.raises(Conflict):
        await w.save_steps("t", "r", [_row("a", StepStatus.COMPLETED)], worker="w2")
    await w.save_steps("t", "r", [_row("a", StepStatus.WAITING)], worker="w1")
    assert [(s.path, s.status) for s in await w.steps("t", "r")] == [("a", StepStatus.WAITING)]
    with pytest.raises(NotFound):
        await w.save_steps("t", "nope", [_row("a")], worker="w1")


async def test_park_loses_to_an_outside_resolution(store: SqlWorkflows) -> None:
    w = store.workflows
    await _create(store, "t", "r")
    [run] = await w.claim("t", worker="w1")
    await w.save_steps("t", "r", [_row("a", StepStatus.WAITING)], worker="w1")
    resolved = await w.resolve_step("t", "r", "a", status=StepStatus.COMPLETED, output={"ok": 1})
    assert (resolved.status, resolved.revision) == (WorkflowStatus.RUNNING, 1)
    assert not await w.park("t", "r", worker="w1", revision=run.revision, wake_at=None)
    assert await w.park("t", "r", worker="w1", revision=1, wake_at=None)
    with pytest.raises(Conflict):
        await w.resolve_step("t", "r", "a", status=StepStatus.COMPLETED)


async def test_waiting_runs_wake_by_time_or_resolution(
    store: SqlWorkflows, clock: ManualClock
) -> None:
    w = store.workflows
    await _create(store, "t", "r1-timer")
    await _create(store, "t", "r2-approval")
    for run_id, wake in (("r1-timer", 1_050.0), ("r2-approval", None)):
        [run] = await w.claim("t", worker="w1")
        assert run.id == run_id
        await w.save_steps("t", run_id, [_row("a", StepStatus.WAITING)], worker="w1")
        assert await w.park("t", run_id, worker="w1", revision=0, wake_at=wake)
    assert await w.claim("t", worker="w2") == []
    clock.advance(50)
    assert [r.id for r in await w.claim("t", worker="w2")] == ["r1-timer"]
    woken = await w.resolve_step("t", "r2-approval", "a", status=StepStatus.COMPLETED)
    assert woken.status is WorkflowStatus.QUEUED
    assert [r.id for r in await w.claim("t", worker="w2")] == ["r2-approval"]


async def test_stale_claims_are_swept_and_finish_is_guarded(
    store: SqlWorkflows, clock: ManualClock
) -> None:
    w = store.workflows
    await _create(store, "t", "r")
    await w.claim("t", worker="dead")
    clock.advance(60)
    assert await w.requeue_stale("t", stale_before=clock.now() - 30) == ["r"]
    [run] = await w.claim("t", worker="alive")
    assert run.attempt == 2
    with pytest.raises(Conflict):
        await w.finish("t", "r", WorkflowStatus.COMPLETED, worker="dead")
    done = await w.finish("t", "r", WorkflowStatus.COMPLETED, worker="alive", output=[1])
    assert (done.status, done.output, done.claimed_by) == (WorkflowStatus.COMPLETED, [1], None)


@pytest.mark.postgres
async def test_engine_on_postgres(make_service: MakeService, side_effects: Path) -> None:
    try:
        url = await create_scratch_database(PG_SERVER)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        pytest.skip(f"Postgres not reachable: {exc}")
    try:
        each = {"tool": {"name": "echo", "args": {"value": "{{ item }}"}}}
        wf = {
            "steps": [
                {"id": "a", "tool": {"name": "record", "args": {"label": "a"}}},
                {"id": "ok", "approval": {}, "needs": "a"},
                {"id": "m", "needs": "ok", "map": {"over": [1, 2], "step": each}},
            ]
        }
        service = make_service(specs({"pg": wf}), url=url)
        await service.start()
        run = await service.start_run("tpg", "pg", {})
        await status_is(service, run.id, WorkflowStatus.WAITING, tenant="tpg")
        await service.approve("tpg", run.id, by="pg")
        done = await finished(service, run.id, tenant="tpg")
        assert (done.status, done.output) == (WorkflowStatus.COMPLETED, [1, 2])
        await service.close()
    finally:
        await drop_scratch_database(url)
