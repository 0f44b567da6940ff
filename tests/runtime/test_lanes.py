from __future__ import annotations

import asyncio

import pytest

from wayport.core.agent import QueueMode
from wayport.core.errors import Conflict, RateLimited
from wayport.runtime.lanes import Lanes

pytestmark = pytest.mark.anyio


async def test_enqueue_runs_one_at_a_time_in_order() -> None:
    lanes, order, gate = Lanes(), [], asyncio.Event()

    async def work(run_id: str) -> None:
        async with lanes.turn("s", run_id):
            order.append(f"start {run_id}")
            await gate.wait()
            order.append(f"end {run_id}")

    for r in ("r1", "r2", "r3"):
        assert lanes.admit("s", r, mode=QueueMode.ENQUEUE, max_queue=4) == []
    tasks = [asyncio.create_task(work(r)) for r in ("r1", "r2", "r3")]
    await asyncio.sleep(0)
    assert order == ["start r1"]
    gate.set()
    await asyncio.gather(*tasks)
    assert order == ["start r1", "end r1", "start r2", "end r2", "start r3", "end r3"]
    assert lanes.pending("s") == []


def test_enqueue_overflow_is_rate_limited() -> None:
    lanes = Lanes()
    lanes.admit("s", "r1", mode=QueueMode.ENQUEUE, max_queue=1)
    lanes.admit("s", "r2", mode=QueueMode.ENQUEUE, max_queue=1)
    with pytest.raises(RateLimited):
        lanes.admit("s", "r3", mode=QueueMode.ENQUEUE, max_queue=1)
    lanes.admit("other", "r4", mode=QueueMode.ENQUEUE, max_queue=1)  # other sessions unaffected


def test_reject_while_busy_is_a_conflict_until_released() -> None:
    lanes = Lanes()
    lanes.admit("s", "r1", mode=QueueMode.REJECT, max_queue=4)
    with pytest.raises(Conflict):
        lanes.admit("s", "r2", mode=QueueMode.REJECT, max_queue=4)
    lanes.release("s", "r1")
    assert lanes.admit("s", "r2", mode=QueueMode.REJECT, max_queue=4) == []


def test_interrupt_names_the_runs_to_cancel() -> None:
    lanes = Lanes()
    lanes.admit("s", "r1", mode=QueueMode.INTERRUPT, max_queue=4)
    assert lanes.admit("s", "r2", mode=QueueMode.INTERRUPT, max_queue=4) == ["r1"]
    assert lanes.pending("s") == ["r1", "r2"]
