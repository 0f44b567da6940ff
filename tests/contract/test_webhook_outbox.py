"""The ``WebhookOutbox`` contract (run completion webhooks): memory, SQLite and Postgres arm,
lease, deliver and retry alike, per tenant, and only for finished runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from wayport.core.session import RunStatus
from wayport.core.webhooks import WebhookState
from wayport.ports import WebhookOutbox
from wayport.store import SqlStore
from wayport.store.outbox import SqlWebhookOutbox
from wayport.testing import ManualClock
from wayport.testing.webhook_outbox import MemoryWebhookOutbox

from .conftest import Stores

pytestmark = pytest.mark.anyio

URL = "https://hooks.example.com/runs"
LEASE = 30.0


@pytest.fixture
async def outbox(stores: Stores, clock: ManualClock) -> AsyncIterator[WebhookOutbox]:
    if isinstance(stores, SqlStore):
        yield SqlWebhookOutbox(stores.db, now=clock.now)
    else:
        yield MemoryWebhookOutbox(runs=stores.runs, now=clock.now)


async def new_run(stores: Stores, tenant: str, run_id: str, *, finished: bool = True) -> str:
    session = await stores.sessions.create(tenant, agent="a")
    run = await stores.runs.create(tenant, session_id=session.id, run_id=run_id)
    if finished:
        await stores.runs.transition(tenant, run.id, RunStatus.CANCELLED)
    return run.id


async def test_arm_keeps_the_first_record(
    outbox: WebhookOutbox, stores: Stores, tenant: str, clock: ManualClock
) -> None:
    run_id = await new_run(stores, tenant, "run-1", finished=False)
    await outbox.arm(tenant, run_id=run_id, url=URL, secret="s3cret")
    await outbox.arm(tenant, run_id=run_id, url="https://other.example.com", secret=None)
    hook = await outbox.get(tenant, run_id)
    assert hook is not None
    assert (hook.tenant_id, hook.run_id, hook.url, hook.secret) == (tenant, run_id, URL, "s3cret")
    assert (hook.state, hook.attempts, hook.last_error) == (WebhookState.ARMED, 0, None)
    assert hook.event_id.startswith("evt") and hook.created_at == clock.now()
    assert await outbox.get(tenant, "run-none") is None


async def test_only_finished_runs_are_due_and_each_is_leased(
    outbox: WebhookOutbox, stores: Stores, tenant: str, clock: ManualClock
) -> None:
    run_id = await new_run(stores, tenant, "run-1", finished=False)
    await outbox.arm(tenant, run_id=run_id, url=URL, secret=None)
    now = clock.now()
    assert await outbox.due(tenant, now=now, lease=LEASE) == []  # still queued
    await stores.runs.transition(tenant, run_id, RunStatus.CANCELLED)
    [hook] = await outbox.due(tenant, now=now, lease=LEASE)
    assert (hook.run_id, hook.next_attempt_at) == (run_id, now + LEASE)
    assert await outbox.due(tenant, now=now + LEASE - 1, lease=LEASE) == []  # leased
    [again] = await outbox.due(tenant, now=now + LEASE, lease=LEASE)  # the lease ran out
    assert again.event_id == hook.event_id and again.attempts == 0


async def test_delivered_is_never_due_again(
    outbox: WebhookOutbox, stores: Stores, tenant: str, clock: ManualClock
) -> None:
    run_id = await new_run(stores, tenant, "run-1")
    await outbox.arm(tenant, run_id=run_id, url=URL, secret=None)
    now = clock.now()
    await outbox.due(tenant, now=now, lease=LEASE)
    await outbox.delivered(tenant, run_id, now=now + 1)
    hook = await outbox.get(tenant, run_id)
    assert hook is not None
    assert (hook.state, hook.attempts, hook.delivered_at) == (WebhookState.DELIVERED, 1, now + 1)
    assert await outbox.due(tenant, now=now + 10 * LEASE, lease=LEASE) == []
    await outbox.failed(tenant, run_id, error="late", retry_at=now)  # a delivered row stays
    assert (await outbox.get(tenant, run_id)) == hook


async def test_failures_retry_then_give_up(
    outbox: WebhookOutbox, stores: Stores, tenant: str, clock: ManualClock
) -> None:
    run_id = await new_run(stores, tenant, "run-1")
    await outbox.arm(tenant, run_id=run_id, url=URL, secret=None)
    now = clock.now()
    await outbox.due(tenant, now=now, lease=LEASE)
    await outbox.failed(tenant, run_id, error="the receiver answered 500", retry_at=now + 2)
    hook = await outbox.get(tenant, run_id)
    assert hook is not None
    assert (hook.state, hook.attempts, hook.next_attempt_at) == (WebhookState.ARMED, 1, now + 2)
    assert hook.last_error == "the receiver answered 500"
    assert await outbox.due(tenant, now=now + 1, lease=LEASE) == []
    [due] = await outbox.due(tenant, now=now + 2, lease=LEASE)
    assert due.attempts == 1
    await outbox.failed(tenant, run_id, error="x" * 5000, retry_at=None)
    hook = await outbox.get(tenant, run_id)
    assert hook is not None
    assert (hook.state, hook.attempts) == (WebhookState.FAILED, 2)
    assert hook.last_error == "x" * 2000  # kept bounded
    assert await outbox.due(tenant, now=now + 10 * LEASE, lease=LEASE) == []


async def test_due_takes_the_oldest_attempts_up_to_the_limit(
    outbox: WebhookOutbox, stores: Stores, tenant: str, clock: ManualClock
) -> None:
    for n in range(5):
        run_id = await new_run(stores, tenant, f"run-{n}")
        await outbox.arm(tenant, run_id=run_id, url=URL, secret=None)
        clock.advance(1)
    now = clock.now()
    first = await outbox.due(tenant, now=now, lease=LEASE, limit=3)
    assert [h.run_id for h in first] == ["run-0", "run-1", "run-2"]
    rest = await outbox.due(tenant, now=now, lease=LEASE, limit=3)
    assert [h.run_id for h in rest] == ["run-3", "run-4"]


async def test_concurrent_passes_never_lease_a_webhook_twice(
    outbox: WebhookOutbox, stores: Stores, tenant: str, clock: ManualClock
) -> None:
    for n in range(12):
        run_id = await new_run(stores, tenant, f"run-{n}")
        await outbox.arm(tenant, run_id=run_id, url=URL, secret=None)
    now = clock.now()
    passes = await asyncio.gather(
        *(outbox.due(tenant, now=now, lease=LEASE, limit=5) for _ in range(4))
    )
    leased = [h.run_id for batch in passes for h in batch]
    assert sorted(leased) == sorted(f"run-{n}" for n in range(12))


async def test_tenants_see_only_their_webhooks(
    outbox: WebhookOutbox, stores: Stores, tenant: str, clock: ManualClock
) -> None:
    other = f"{tenant}-b"
    mine = await new_run(stores, tenant, "run-1")
    await outbox.arm(tenant, run_id=mine, url=URL, secret="mine")
    assert await outbox.get(other, mine) is None
    now = clock.now()
    assert await outbox.due(other, now=now, lease=LEASE) == []
    await outbox.delivered(other, mine, now=now)
    await outbox.failed(other, mine, error="no", retry_at=None)
    # arming another tenant's run id is that tenant's own record, whatever the id
    theirs = await new_run(stores, other, "run-1")
    await outbox.arm(other, run_id=theirs, url="https://b.example.com", secret="theirs")
    [hook] = await outbox.due(tenant, now=now, lease=LEASE)
    assert (hook.tenant_id, hook.secret, hook.attempts) == (tenant, "mine", 0)
    [their_hook] = await outbox.due(other, now=now, lease=LEASE)
    assert (their_hook.tenant_id, their_hook.url) == (other, "https://b.example.com")
