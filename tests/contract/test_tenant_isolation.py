"""Tenant isolation, as a property: whatever tenant A stores is invisible to tenant B through
every read, update and delete, and B reusing A's very ids touches nothing of A's."""

from __future__ import annotations

import os
import string
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from wayport.core.errors import NotFound
from wayport.core.session import NewMessage, RunStatus, StepKind
from wayport.testing import ManualClock

from .conftest import Stores

pytestmark = pytest.mark.anyio

tenants = st.text(string.ascii_letters + string.digits + "-_.@:", min_size=1, max_size=24)
ids = st.text(string.ascii_lowercase + string.digits + "-_", min_size=1, max_size=40)


def said(text: str, key: str | None = None) -> NewMessage:
    return NewMessage(message={"role": "user", "content": text}, idempotency_key=key)


async def snapshot(stores: Stores, tenant: str, session_id: str, run_ids: list[str]) -> Any:
    return (
        await stores.sessions.get(tenant, session_id),
        await stores.sessions.history(tenant, session_id),
        [await stores.runs.get(tenant, r) for r in run_ids],
        [await stores.runs.steps(tenant, r) for r in run_ids],
        await stores.runs.unfinished(tenant),
    )


async def invisible(stores: Stores, tenant: str, session_id: str, run_id: str) -> None:
    """Every method, under ``tenant``, treats ids it does not own as missing."""
    sessions, runs = stores.sessions, stores.runs
    assert await sessions.get(tenant, session_id) is None
    assert await runs.get(tenant, run_id) is None
    missing: list[Callable[[], Awaitable[object]]] = [
        lambda: sessions.update(tenant, session_id, summary="stolen"),
        lambda: sessions.append(tenant, session_id, [said("intruder")]),
        lambda: sessions.history(tenant, session_id),
        lambda: sessions.archive(tenant, session_id),
        lambda: sessions.delete(tenant, session_id),
        lambda: runs.create(tenant, session_id=session_id),
        lambda: runs.transition(tenant, run_id, RunStatus.CANCELLED),
        lambda: runs.heartbeat(tenant, run_id, worker="w-a"),
        lambda: runs.record_step(
            tenant, run_id, step_no=9, kind=StepKind.TOOL, messages=[said("x")]
        ),
        lambda: runs.steps(tenant, run_id),
    ]
    for call in missing:
        with pytest.raises(NotFound):
            await call()
    assert await sessions.idle(tenant, updated_before=1e12) == []
    assert await runs.unfinished(tenant) == []
    assert await runs.claim(tenant, worker="w-b", limit=10) == []
    assert await runs.requeue_stale(tenant, stale_before=1e12) == []


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    a=tenants, b=tenants, session_id=ids, run_id=ids, said_n=st.integers(0, 4), reuse=st.booleans()
)
async def test_another_tenants_ids_are_invisible(
    stores: Stores,
    clock: ManualClock,
    a: str,
    b: str,
    session_id: str,
    run_id: str,
    said_n: int,
    reuse: bool,
) -> None:
    assume(a != b)
    # the store outlives the examples: fresh tenant names keep them apart
    fresh = os.urandom(3).hex()
    a, b = f"{a}~{fresh}", f"{b}~{fresh}"
    await stores.sessions.create(a, agent="agent", session_id=session_id, metadata={"t": a})
    await stores.sessions.append(a, session_id, [said(f"a{i}", key=f"k{i}") for i in range(said_n)])
    await stores.runs.create(a, session_id=session_id, run_id=run_id)
    queued = await stores.runs.create(a, session_id=session_id)
    await stores.runs.claim(a, worker="w-a")
    await stores.runs.record_step(a, run_id, step_no=1, kind=StepKind.MODEL, messages=[said("r")])
    clock.advance(1)
    before = await snapshot(stores, a, session_id, [run_id, queued.id])

    await invisible(stores, b, session_id, run_id)
    if reuse:
        # B may hold the very same ids; working on them changes only B's rows
        await stores.sessions.create(b, agent="other", session_id=session_id)
        await stores.sessions.append(b, session_id, [said("b", key="k0")])
        await stores.sessions.update(b, session_id, summary="b's", pinned=["b"])
        await stores.sessions.archive(b, session_id)
        await stores.runs.create(b, session_id=session_id, run_id=run_id)
        [claimed] = await stores.runs.claim(b, worker="w-b", limit=5)
        assert claimed.id == run_id
        await stores.runs.heartbeat(b, run_id, worker="w-b")
        await stores.runs.record_step(b, run_id, step_no=1, kind=StepKind.TOOL)
        await stores.runs.transition(b, run_id, RunStatus.FAILED, error="b failed")
        await stores.sessions.delete(b, session_id)
        await invisible(stores, b, session_id, run_id)

    assert await snapshot(stores, a, session_id, [run_id, queued.id]) == before
