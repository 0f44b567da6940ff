"""Reading the ledger sees every record made before the read, even one the background writer
has taken from the buffer and is still writing (the race a streamed request's record lost to
an immediate ``GET /v1/usage``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from wayport.core.usage import UsageRecord
from wayport.service.usage import UsageService
from wayport.testing.usage import MemoryUsageStore

pytestmark = pytest.mark.anyio


class HeldStore(MemoryUsageStore):
    """The memory ledger, whose writes wait until the test lets them through."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = asyncio.Event()
        self.release = asyncio.Event()

    async def record(self, records: Sequence[UsageRecord]) -> None:
        self.writing.set()
        await self.release.wait()
        await super().record(records)


async def test_a_read_waits_for_the_batch_being_written() -> None:
    store = HeldStore()
    usage = UsageService(store=store)
    usage.record(UsageRecord(tenant="t", id="u-1", at=1.0, kind="request", model="m"))
    await store.writing.wait()  # the writer task took the record and is writing it
    reading = asyncio.create_task(usage.totals("t", group_by="model"))
    await asyncio.sleep(0)  # let the read reach its flush  (ordering, not timing)
    assert not reading.done()
    store.release.set()
    [total] = await reading
    assert total.requests == 1
    await usage.close()
