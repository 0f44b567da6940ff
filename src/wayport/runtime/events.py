"""Live run events, in process: the runner emits, any number of followers read.

Each unfinished run this process works on has one :class:`RunChannel`. It keeps every event
of the run until the run finishes, so a follower that joins late (``GET /v1/runs/{id}/stream``)
first replays what it missed, then follows live; nothing is lost between "subscribe" and
"start"::

    hub = RunEvents()
    channel = hub.open(run.id)          # before the run can start
    async for event in channel.follow():
        ...                             # ends after the RunFinished event
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from wayport.core.agent import RunEvent, RunFinished
from wayport.ports import Bus
from wayport.runtime.event_codec import decode, encode


class RunChannel:
    __slots__ = ("_changed", "events", "finished")

    def __init__(self) -> None:
        self.events: list[RunEvent] = []
        self.finished: RunFinished | None = None
        self._changed = asyncio.Event()

    def emit(self, event: RunEvent) -> None:
        if self.finished is not None:
            return  # a run finishes once; anything later is a bug's echo, not news
        self.events.append(event)
        if isinstance(event, RunFinished):
            self.finished = event
        # Waking by replacement: every follower waits on the event it saw, so none misses
        # an emit that happens between its check and its wait.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def follow(self) -> AsyncIterator[RunEvent]:
        """Every event of the run from the first, then live ones; ends after ``RunFinished``."""
        seen = 0
        while True:
            changed = self._changed
            while seen < len(self.events):
                event = self.events[seen]
                seen += 1
                yield event
            if self.finished is not None:
                return
            await changed.wait()

    async def wait(self) -> RunFinished:
        while self.finished is None:
            await self._changed.wait()
        return self.finished


class RunEvents:
    """The channels of the runs in flight here. A run's channel is dropped when it finishes;
    followers holding it still read to the end, later ones read the store instead.

    With a ``bus`` (scale-out: replicas share the work) events go to the run's log on the
    bus instead, and every channel is fed from that log, whichever replica executes the run:
    a follower here replays the run from its first event and follows it live."""

    def __init__(self, bus: Bus | None = None) -> None:
        self._channels: dict[str, RunChannel] = {}
        self._bus = bus
        self._readers: dict[str, asyncio.Task[None]] = {}

    def open(self, run_id: str) -> RunChannel:
        channel = self._channels.get(run_id)
        if channel is None:
            channel = self._channels[run_id] = RunChannel()
            if self._bus is not None:
                self._readers[run_id] = asyncio.create_task(
                    self._relay(self._bus, run_id, channel), name=f"events-{run_id}"
                )
        return channel

    def get(self, run_id: str) -> RunChannel | None:
        return self._channels.get(run_id)

    def discard(self, run_id: str) -> None:
        """Drop a channel opened for a run that was never stored."""
        self._channels.pop(run_id, None)
        reader = self._readers.pop(run_id, None)
        if reader is not None:
            reader.cancel()

    def emit(self, run_id: str, event: RunEvent) -> None:
        if self._bus is not None:
            self._bus.append(run_id, encode(event), last=isinstance(event, RunFinished))
            return
        self.open(run_id).emit(event)
        if isinstance(event, RunFinished):
            del self._channels[run_id]

    def close(self) -> None:
        """Stop relaying from the bus (shutdown); followers see no further events."""
        for reader in self._readers.values():
            reader.cancel()
        self._readers.clear()

    async def _relay(self, bus: Bus, run_id: str, channel: RunChannel) -> None:
        try:
            async for data in bus.read(run_id):
                channel.emit(decode(data))
        finally:
            if self._channels.get(run_id) is channel:
                del self._channels[run_id]
            if self._readers.get(run_id) is asyncio.current_task():
                del self._readers[run_id]
