"""A run that failed over from the candidate to stable goes on on stable when it resumes: the
failover is stored with the run (its ``agent_version``), so a run that then waits for a tool
approval, across a restart of the service on the same SQLite file, is resumed on the version
that answered, not on the candidate whose model is down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from wayport.core.agent import AgentSpec, ToolSpec
from wayport.core.release_codec import strategy_from_dict
from wayport.core.session import RunStatus
from wayport.service.releases import ReleaseService
from wayport.store.releases import SqlReleaseStore
from wayport.testing import ManualClock

from .conftest import Agents, answer, user

pytestmark = pytest.mark.anyio

#: stable asks for ``charge`` (which needs an approval), then answers "use-tool v1 after …"
STABLE = AgentSpec(name="support", model="good", instructions="use-tool v1", tools=("charge",))
CANDIDATE = replace(STABLE, model="bad", instructions="use-tool v2")
CHARGE = ToolSpec(name="charge", side_effects=True, requires_approval=True)


class Node(Agents):
    """One process's worth of agents and releases on the SQLite file under ``state``."""

    def __init__(self, state: Path) -> None:
        super().__init__(state, answer, spec=STABLE, charge_spec=CHARGE)
        self.closed = False
        self.releases = ReleaseService(
            agents=self.agents,
            store=lambda: SqlReleaseStore(self.sql.db),
            wall=ManualClock(start=1_750_000_000.0).now,
        )
        self.agents.picker = self.releases

    async def start(self) -> None:
        await self.good.start()
        await self.bad.start()
        await self.agents.start()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.releases.drain()
        await self.agents.close()


@pytest.fixture
async def first(tmp_path: Path) -> AsyncIterator[Node]:
    node = Node(tmp_path)
    await node.start()
    try:
        yield node
    finally:
        await node.close()


async def test_a_failed_over_run_resumes_on_stable_after_approval_and_restart(
    first: Node, tmp_path: Path
) -> None:
    made = await first.releases.create(
        "default",
        "support",
        spec=CANDIDATE,
        strategy=strategy_from_dict({"kind": "blue_green"}),
    )
    candidate = made.state.candidate
    assert candidate == CANDIDATE.version
    session = await first.agents.create_session("support", preview="1")
    assert session.agent_version == candidate
    run = await first.agents.submit(session.id, user("charge me"), preview="1")
    paused = await first.agents.finished(run.id)

    # the candidate's model failed; stable answered with a call that waits for approval
    assert paused.run.status is RunStatus.REQUIRES_APPROVAL, paused.run.error
    assert len(first.bad.calls) == 1 and len(first.good.calls) == 1
    stored = await first.agents.run(run.id)
    assert stored.agent_version == STABLE.version  # the failover is durable
    assert isinstance(stored.output, dict)
    assert stored.output["failover"] == {"attempted": candidate, "answered_by": STABLE.version}
    await first.close()

    # a restart: a new service on the same file; the approval resumes the run there
    second = Node(tmp_path)
    await second.start()
    try:
        await second.agents.approve(run.id, approve=True)
        done = await second.agents.finished(run.id)
        assert done.run.status is RunStatus.COMPLETED, done.run.error
        assert done.run.output == {"content": "use-tool v1 after charged"}
        assert done.run.agent_version == STABLE.version
        assert second.charged == ["charged"]
        assert second.bad.calls == []  # the candidate's model was never asked again
        assert len(second.good.calls) == 1
    finally:
        await second.close()
