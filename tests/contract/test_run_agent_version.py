"""``RunStore.set_agent_version`` (a release failover moves a running run to the stable
version): memory, SQLite and Postgres behave the same."""

from __future__ import annotations

import pytest

from wayport.core.errors import Conflict, NotFound
from wayport.core.session import RunStatus
from wayport.testing import ManualClock

from .conftest import Stores

pytestmark = pytest.mark.anyio


async def test_a_running_run_changes_version_for_its_worker_only(
    stores: Stores, tenant: str, clock: ManualClock
) -> None:
    s = await stores.sessions.create(tenant, agent="a")
    await stores.runs.create(tenant, session_id=s.id, agent_version="cand", run_id="run-1")
    with pytest.raises(Conflict):  # queued: nobody executes it yet
        await stores.runs.set_agent_version(tenant, "run-1", "stable")
    [claimed] = await stores.runs.claim(tenant, worker="w1")
    with pytest.raises(Conflict):  # another worker's run
        await stores.runs.set_agent_version(tenant, "run-1", "stable", worker="w2")
    clock.advance(5)
    moved = await stores.runs.set_agent_version(tenant, "run-1", "stable", worker="w1")
    assert (moved.agent_version, moved.status, moved.claimed_by) == (
        "stable",
        RunStatus.RUNNING,
        "w1",
    )
    assert moved.updated_at == clock.now() and moved.attempt == claimed.attempt
    assert await stores.runs.get(tenant, "run-1") == moved
    with pytest.raises(NotFound):
        await stores.runs.set_agent_version(tenant, "run-missing", "stable")
    with pytest.raises(NotFound):  # another tenant's run is not found
        await stores.runs.set_agent_version(f"{tenant}-other", "run-1", "x")
    assert (await stores.runs.get(tenant, "run-1")) == moved
