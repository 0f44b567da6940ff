"""The engine's heartbeat loop survives a run that finishes while its heartbeat is in flight
(it once died of a ``KeyError`` there, and with it the stale sweep that lets a replica take
over the runs of a dead one)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import specs, tools
from wayport.ports import WorkflowStore
from wayport.runtime.workflows import Effects
from wayport.service.workflows import WorkflowCatalog, WorkflowService
from wayport.store.workflows import open_workflow_store

pytestmark = pytest.mark.anyio
T = "default"
SLOW = {"steps": [{"id": "s", "tool": {"name": "record", "args": {"label": "s", "pause": 0.2}}}]}


class LateHeartbeat:
    """The real store, whose heartbeat lands only after the runs it was asked about finished:
    the race, made certain."""

    def __init__(self, inner: WorkflowStore) -> None:
        self._inner = inner
        self.beats = 0
        self.late = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def heartbeat(self, tenant: str, run_ids: Sequence[str], *, worker: str) -> set[str]:
        deadline = time.monotonic() + 20
        for run_id in run_ids:
            while not (found := await self._inner.get(tenant, run_id)) or not found.status.finished:
                assert time.monotonic() < deadline, f"{run_id} never finished"
                await asyncio.sleep(0.005)  # polling for a condition
            self.late += 1
        self.beats += 1
        return await self._inner.heartbeat(tenant, run_ids, worker=worker)


@dataclass
class Handle:
    workflows: LateHeartbeat
    inner: Any

    async def close(self) -> None:
        await self.inner.close()


async def test_a_run_finishing_during_a_heartbeat_keeps_the_loop_alive(
    tmp_path: Path, side_effects: Path
) -> None:
    handles: list[Handle] = []

    async def open_store() -> Handle:
        inner = await open_workflow_store(None, state_dir=tmp_path)
        handles.append(Handle(LateHeartbeat(inner.workflows), inner))
        return handles[-1]

    service = WorkflowService(
        catalog=WorkflowCatalog(specs({"slow": SLOW})),
        open_store=open_store,
        effects=Effects(tools=tools()),
        engine_options={"poll_interval": 0.05, "heartbeat_interval": 0.02},
    )
    await service.start()
    try:
        run = await service.start_run(T, "slow", {})
        store = handles[0].workflows
        deadline = time.monotonic() + 20
        while store.late == 0:  # a heartbeat was asked about the run, and the run finished
            assert time.monotonic() < deadline, "no heartbeat named the run"
            await asyncio.sleep(0.01)
        assert (await service.run(T, run.id)).status.value == "completed"
        after = store.beats
        while store.beats < after + 3:  # the loop goes on beating
            assert time.monotonic() < deadline, "the heartbeat loop died"
            await asyncio.sleep(0.01)
    finally:
        await service.close()
