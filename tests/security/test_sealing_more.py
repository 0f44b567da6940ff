"""The rest of the contents sealed at rest, on real SQLite and Postgres: workflow run inputs,
outputs and errors and step outputs and errors (tool results), shadow answers in release events,
feedback comments, per-case eval outputs, and the delivery errors of the webhook and channel
outboxes. With keys they never reach the database in plaintext and read back whole; another
tenant or another key cannot open them; ``reencrypt`` seals old rows and rotates them; without
keys they are stored as they are."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from tests.server.helpers import serve

from wayport.bootstrap import build
from wayport.config.loader import parse_config
from wayport.core.channels import Outbound, OutboxItem, OutboxStatus
from wayport.core.errors import StoreError
from wayport.core.release_records import EvalResult, Feedback
from wayport.core.workflow_plan import StepStatus
from wayport.core.workflow_run import StepRow, WorkflowStatus
from wayport.models.registry import BackendRegistry
from wayport.store import SqlStore, open_store
from wayport.store.channels import SqlChannelStore
from wayport.store.outbox import SqlWebhookOutbox
from wayport.store.releases import SqlReleaseStore
from wayport.store.reseal import reencrypt
from wayport.store.schema import (
    channel_outbox,
    eval_results,
    feedback,
    release_events,
    webhook_outbox,
    workflow_runs,
    workflow_steps,
)
from wayport.store.sealing import Sealer, generate_key
from wayport.store.workflows import SqlWorkflowStore
from wayport.testing import ManualClock, Reply, ScriptedBackend

pytestmark = pytest.mark.anyio

ASKED = "wire 9000 EUR to DE89370400440532013000 tonight"
TOOL_RESULT = "balance of acct 5500-1234: 48213.07"
ANSWERED = "done: 9000 EUR sent to DE89370400440532013000"
SHADOW_SAID = "I would not send 9000 EUR to DE89370400440532013000"
COMMENT = "it leaked my account 5500-1234"
ECHOED = "400 Bad Request: cannot deliver 'done: 9000 EUR sent'"
SECRETS = (ASKED, TOOL_RESULT, ANSWERED, SHADOW_SAID, COMMENT, ECHOED, "5500-1234", "9000 EUR")
K1 = generate_key("k1")
K2 = generate_key("k2")
TABLES = (
    workflow_runs,
    workflow_steps,
    release_events,
    feedback,
    eval_results,
    webhook_outbox,
    channel_outbox,
)
RUN = "wf-0001"


@pytest.fixture
async def opened(db_url: str, clock: ManualClock) -> AsyncIterator[SqlStore]:
    store = await open_store(db_url, now=clock.now)
    try:
        yield store
    finally:
        await store.close()


@dataclass(frozen=True, slots=True)
class Stores:
    workflows: SqlWorkflowStore
    releases: SqlReleaseStore
    hooks: SqlWebhookOutbox
    channels: SqlChannelStore


def stores(store: SqlStore, keys: str | None, clock: ManualClock) -> Stores:
    sealer = Sealer.parse(keys)
    return Stores(
        workflows=SqlWorkflowStore(store.db, now=clock.now, sealer=sealer),
        releases=SqlReleaseStore(store.db, sealer=sealer),
        hooks=SqlWebhookOutbox(store.db, now=clock.now, sealer=sealer),
        channels=SqlChannelStore(store.db, now=clock.now, sealer=sealer),
    )


async def fill(store: SqlStore, keys: str | None, tenant: str, clock: ManualClock) -> str:
    """One of everything, written through the stores with ``keys``; returns the agent run id."""
    s = stores(store, keys, clock)
    wf = s.workflows
    run, created = await wf.create_run(
        tenant, run_id=RUN, workflow="pay", version="v1", definition={"steps": []}, input=[ASKED]
    )
    assert created and run.input == [ASKED]
    [claimed] = await wf.claim(tenant, worker="w1")
    assert claimed.input == [ASKED]
    await wf.save_steps(
        tenant,
        RUN,
        [
            StepRow(path="look", step_id="look", kind="tool", status=StepStatus.RUNNING),
            StepRow(path="ok", step_id="ok", kind="approval", status=StepStatus.WAITING),
        ],
        worker="w1",
    )
    done = StepRow(
        path="look",
        step_id="look",
        kind="tool",
        status=StepStatus.FAILED,
        output={"result": TOOL_RESULT},
        error=f"tool failed after: {TOOL_RESULT}",
    )
    await wf.save_steps(tenant, RUN, [done], worker="w1")  # the update path
    await wf.resolve_step(
        tenant, RUN, "ok", status=StepStatus.COMPLETED, output={"comment": COMMENT}
    )
    finished = await wf.finish(
        tenant,
        RUN,
        WorkflowStatus.FAILED,
        worker="w1",
        output={"answer": ANSWERED},
        error=f"step look: {TOOL_RESULT}",
    )
    assert finished.output == {"answer": ANSWERED}

    rel = s.releases
    detail = {"answer": ANSWERED, "shadow_answer": SHADOW_SAID, "same": False}
    await rel.add_event(tenant, "pay-agent", "shadow", detail, at=clock.now())
    await rel.add_feedback(
        tenant,
        Feedback(run_id="run-1", agent="pay-agent", version="v2", score=-1, comment=COMMENT, at=1),
    )
    results = [{"case": "c1", "output": ANSWERED, "passed": False}]
    await rel.add_eval(
        tenant,
        EvalResult(
            id="ev-1", agent="pay-agent", suite="s", version="v2", score=0, results=results, at=1
        ),
    )

    session = await store.sessions.create(tenant, agent="a")
    agent_run = await store.runs.create(tenant, session_id=session.id, input={"text": "hi"})
    await s.hooks.arm(tenant, run_id=agent_run.id, url="https://example.com/hook", secret=None)
    await s.hooks.failed(tenant, agent_run.id, error=ECHOED, retry_at=clock.now() + 60)
    reply = OutboxItem(
        id="in-1:0",
        channel="tg",
        target="c-1#",
        message=Outbound(channel="tg", chat="c-1", text="hi"),
    )
    await s.channels.enqueue(tenant, [reply])
    await s.channels.settle(tenant, "in-1:0", OutboxStatus.PENDING, attempts=1, reason=ECHOED)
    return agent_run.id


async def read_back(
    store: SqlStore, keys: str | None, tenant: str, agent_run: str, clock: ManualClock
) -> None:
    s = stores(store, keys, clock)
    run = await s.workflows.get(tenant, RUN)
    assert run is not None and run.input == [ASKED] and run.output == {"answer": ANSWERED}
    assert run.error == f"step look: {TOOL_RESULT}"
    [listed] = await s.workflows.list_runs(tenant)
    assert listed == run
    steps = {step.path: step for step in await s.workflows.steps(tenant, RUN)}
    assert steps["look"].output == {"result": TOOL_RESULT}
    assert steps["look"].error == f"tool failed after: {TOOL_RESULT}"
    assert steps["ok"].output == {"comment": COMMENT} and steps["ok"].error is None

    [event] = await s.releases.events(tenant, "pay-agent")
    assert event.detail == {"answer": ANSWERED, "shadow_answer": SHADOW_SAID, "same": False}
    found = await s.releases.latest_eval(tenant, "pay-agent", "v2")
    assert found is not None and found.results == [
        {"case": "c1", "output": ANSWERED, "passed": False}
    ]
    assert await s.releases.feedback_counts(tenant, "pay-agent", "v2", since=0) == (0, 1)

    hook = await s.hooks.get(tenant, agent_run)
    assert hook is not None and hook.last_error == ECHOED
    item = await s.channels.outbox(tenant, "in-1:0")
    assert item is not None and item.reason == ECHOED


async def raw(store: SqlStore, tenant: str) -> str:
    """The tenant's rows of those tables, as the database returns them."""

    def job(conn: sa.Connection) -> str:
        return repr(
            [list(conn.execute(sa.select(t).where(t.c.tenant_id == tenant))) for t in TABLES]
        )

    return await store.db.read(job)


async def raw_comment(store: SqlStore, tenant: str) -> str:
    stmt = sa.select(feedback.c.comment).where(feedback.c.tenant_id == tenant)
    return str(await store.db.read(lambda conn: conn.execute(stmt).scalar_one()))


async def test_contents_never_reach_the_database(
    opened: SqlStore, tenant: str, clock: ManualClock
) -> None:
    agent_run = await fill(opened, K1, tenant, clock)
    stored = await raw(opened, tenant)
    for plain in SECRETS:
        assert plain not in stored
    assert "$sealed" in stored and "wp-sealed:v1:k1:" in stored
    assert "pay-agent" in stored and "approval" in stored  # names and kinds stay plaintext
    await read_back(opened, K1, tenant, agent_run, clock)
    # the feedback comment has no reader in the store: it opens with the key, here only
    comment = await raw_comment(opened, tenant)
    assert Sealer.parse(K1).open_text(tenant, "feedback.comment", comment) == COMMENT
    # the tenant is the associated data: another tenant cannot open it
    with pytest.raises(StoreError, match=r"feedback\.comment"):
        Sealer.parse(K1).open_text(f"{tenant}-x", "feedback.comment", comment)
    # nor another column
    with pytest.raises(StoreError):
        Sealer.parse(K1).open_text(tenant, "workflow_steps.error", comment)


async def test_a_missing_key_is_refused_not_served(
    opened: SqlStore, tenant: str, clock: ManualClock
) -> None:
    await fill(opened, K1, tenant, clock)
    for keys in (K2, None):
        s = stores(opened, keys, clock)
        with pytest.raises(StoreError, match="'k1'"):
            await s.workflows.get(tenant, RUN)
        with pytest.raises(StoreError, match="'k1'"):
            await s.workflows.steps(tenant, RUN)
        with pytest.raises(StoreError, match="'k1'"):
            await s.releases.events(tenant, "pay-agent")
        with pytest.raises(StoreError, match="'k1'"):
            await s.releases.latest_eval(tenant, "pay-agent", "v2")
        with pytest.raises(StoreError, match="'k1'"):
            await s.channels.outbox(tenant, "in-1:0")


async def test_a_row_copied_into_another_tenant_fails_to_open(
    opened: SqlStore, tenant: str, clock: ManualClock
) -> None:
    await fill(opened, K1, tenant, clock)
    other = f"{tenant}-b"
    wf = stores(opened, K1, clock).workflows
    await wf.create_run(
        other, run_id=RUN, workflow="pay", version="v1", definition={"steps": []}, input=None
    )
    mine = sa.select(workflow_runs.c.input).where(
        workflow_runs.c.tenant_id == tenant, workflow_runs.c.id == RUN
    )
    copy = (
        sa.update(workflow_runs)
        .where(workflow_runs.c.tenant_id == other, workflow_runs.c.id == RUN)
        .values(input=mine.scalar_subquery())
    )
    await opened.db.write(lambda conn: conn.execute(copy))
    with pytest.raises(StoreError, match=r"workflow_runs\.input"):
        await wf.get(other, RUN)


async def test_without_keys_contents_are_plaintext(
    opened: SqlStore, tenant: str, clock: ManualClock
) -> None:
    agent_run = await fill(opened, None, tenant, clock)
    stored = await raw(opened, tenant)
    for plain in (ASKED, TOOL_RESULT, ANSWERED, SHADOW_SAID, COMMENT, ECHOED):
        assert plain in stored
    assert "$sealed" not in stored and "wp-sealed" not in stored
    await read_back(opened, None, tenant, agent_run, clock)


async def test_reencrypt_seals_and_rotates_them(
    opened: SqlStore, tenant: str, clock: ManualClock
) -> None:
    agent_run = await fill(opened, None, tenant, clock)  # written before encryption was on

    report = await reencrypt(opened.db, Sealer.parse(K1), only_tenants=[tenant])
    # workflow run and 2 steps, event, feedback, eval, webhook, channel outbox, agent run input
    assert report.resealed == 9
    stored = await raw(opened, tenant)
    for plain in SECRETS:
        assert plain not in stored
    await read_back(opened, K1, tenant, agent_run, clock)

    rotated = f"{K2},{K1}"
    report = await reencrypt(opened.db, Sealer.parse(rotated), only_tenants=[tenant], batch=1)
    assert report.resealed == 9
    stored = await raw(opened, tenant)
    assert "'$sealed': 'k1'" not in stored and "wp-sealed:v1:k1:" not in stored
    assert "'$sealed': 'k2'" in stored and "wp-sealed:v1:k2:" in stored
    await read_back(opened, K2, tenant, agent_run, clock)  # k1 no longer needed
    again = await reencrypt(opened.db, Sealer.parse(K2), only_tenants=[tenant])
    assert again.resealed == 0  # everything is current


WORKFLOW_CONFIG = """\
server: {{host: 127.0.0.1, port: 0, access_log: false, metrics: false}}
state_dir: {state}
store: {{encryption_keys: "{keys}"}}
deployments:
  chat: {{backend: scripted}}
models:
  chat: {{deployments: [chat]}}
workflows:
  pay:
    inputs: {{ask: {{required: true}}}}
    steps:
      - id: draft
        llm: {{model: chat, prompt: "Answer {{{{ input.ask }}}}"}}
      - id: ok
        approval: {{message: "Send it?"}}
"""


async def test_the_composition_root_seals_workflow_runs(tmp_path: Path) -> None:
    """``wayport.yaml`` with keys -> ``bootstrap.build``: the workflow engine's own store
    seals the run input and the llm step's output, and the API still shows them."""
    registry = BackendRegistry()
    registry.register("scripted", lambda *, name: ScriptedBackend(name, default=Reply(ANSWERED)))
    text = WORKFLOW_CONFIG.format(state=tmp_path, keys=K1)
    runtime = build(parse_config(text, env={}, backend_kinds={"scripted"}), registry=registry)
    async with serve(runtime.app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        started = await client.post("/v1/workflows/pay/runs", json={"input": {"ask": ASKED}})
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
        while True:  # polling for a condition: the run parks at the approval
            body = (await client.get(f"/v1/workflow-runs/{run_id}")).json()
            if body["status"] == "waiting":
                break
            assert body["status"] in ("queued", "running"), body
            await asyncio.sleep(0.01)
        assert body["input"] == {"ask": ASKED}
        assert ANSWERED in repr(body["steps"])

        def job(conn: sa.Connection) -> str:
            return repr([list(conn.execute(sa.select(t))) for t in (workflow_runs, workflow_steps)])

        db = sa.create_engine(f"sqlite:///{tmp_path / 'wayport.db'}")
        try:
            with db.connect() as conn:
                stored = job(conn)
        finally:
            db.dispose()
        assert run_id in stored and "$sealed" in stored
        assert ASKED not in stored and ANSWERED not in stored
