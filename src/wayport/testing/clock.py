"""A clock that moves only when told to, for tests of timing logic without sleeping."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class ManualClock:
    """``now()`` returns the set time; ``sleep()`` waits until ``advance()`` passes its deadline."""

    def __init__(self, start: float = 1000.0, *, autoadvance: bool = False) -> None:
        """With ``autoadvance`` every ``sleep`` moves time forward at once by its own length,
        so code that backs off runs straight through while ``slept`` records the waits."""
        self._now = start
        self._autoadvance = autoadvance
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.slept: list[float] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self._autoadvance:
            self.advance(max(seconds, 0.0))
            await asyncio.sleep(0)
            return
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    def advance(self, seconds: float) -> None:
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    @property
    def pending_sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())
