"""The ``Bus`` in one process: run logs in lists, topics as handler lists. What a single node
uses where replicas use ``wayport.store.redis_bus.RedisBus``, and the reference the Redis bus
is tested against (``tests/scale/test_bus.py``)::

    bus = LocalBus()
    bus.subscribe("cancel", print)
    await bus.start()
    bus.append("run-1", b"hello", last=True)
    [entry async for entry in bus.read("run-1")]    # [b"hello"]
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable


class _Log:
    __slots__ = ("changed", "ended", "entries")

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.ended = False
        self.changed = asyncio.Event()


class LocalBus:
    def __init__(self) -> None:
        self._logs: dict[str, _Log] = {}
        self._handlers: dict[str, list[Callable[[str], None]]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def append(self, run_id: str, data: bytes, *, last: bool) -> None:
        log = self._log(run_id)
        if log.ended:
            return
        log.entries.append(data)
        log.ended = last
        # wake by replacement: a reader waits on the event it saw, and misses nothing
        changed, log.changed = log.changed, asyncio.Event()
        changed.set()

    async def read(self, run_id: str) -> AsyncIterator[bytes]:
        log, seen = self._log(run_id), 0
        while True:
            changed = log.changed
            while seen < len(log.entries):
                seen += 1
                yield log.entries[seen - 1]
            if log.ended:
                return
            await changed.wait()

    async def publish(self, topic: str, message: str) -> None:
        for handler in self._handlers.get(topic, ()):
            handler(message)

    def subscribe(self, topic: str, handler: Callable[[str], None]) -> None:
        self._handlers.setdefault(topic, []).append(handler)

    def _log(self, run_id: str) -> _Log:
        log = self._logs.get(run_id)
        if log is None:
            log = self._logs[run_id] = _Log()
        return log
