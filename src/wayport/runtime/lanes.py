"""Per-session lanes: one run at a time per session, and what happens to the runs that arrive
while one is in progress (the agent's :class:`~wayport.core.agent.QueueMode`).

Admission is decided when a run is submitted, before it is stored; execution waits its turn::

    lanes = Lanes()
    interrupted = lanes.admit(session_id, run_id, mode=QueueMode.ENQUEUE, max_queue=16)
    ...                                   # store the run, wake the worker
    async with lanes.turn(session_id, run_id):
        ...                               # the only run of this session executing now

``admit`` raises ``Conflict`` (``REJECT`` while busy) or ``RateLimited`` (the bounded queue is
full); under ``INTERRUPT`` it returns the runs to cancel at their next safe point. Turns are
granted in the order they are asked for (``asyncio.Lock`` is FIFO), which is the order the
worker claims runs: oldest first.

A run paused for approval keeps the lane (``hold``): the session's later runs wait behind it
(or are refused, or interrupt it, by the queue mode), so a tool call and its result stay
adjacent in the history. Its next turn (approved, denied or cancelled) takes the hold back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from wayport.core.agent import QueueMode
from wayport.core.errors import Conflict, RateLimited


@dataclass(slots=True)
class _Lane:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: admitted and not yet finished, in admission order (the active one first)
    pending: dict[str, None] = field(default_factory=dict)
    active: str | None = None
    held: str | None = None  #: a run paused for approval: the lane waits for it
    unheld: asyncio.Event = field(default_factory=asyncio.Event)  #: set while nothing is held


class Lanes:
    """In-process lanes of every session with a pending run; idle sessions cost nothing."""

    def __init__(self) -> None:
        self._lanes: dict[str, _Lane] = {}

    def admit(self, session_id: str, run_id: str, *, mode: QueueMode, max_queue: int) -> list[str]:
        """Let ``run_id`` into the session's lane or refuse it. Returns the runs that must be
        cancelled for it (``INTERRUPT``), oldest first; empty otherwise."""
        lane = self._lanes.get(session_id)
        busy = [r for r in lane.pending if r != run_id] if lane is not None else []
        if busy and mode is QueueMode.REJECT:
            raise Conflict(
                f"session {session_id} already has a run in progress", code="session_busy"
            )
        if mode is QueueMode.ENQUEUE and len(busy) > max_queue:
            raise RateLimited(
                f"session {session_id} has {len(busy)} runs waiting (at most {max_queue})",
                code="session_queue_full",
            )
        if lane is None:
            lane = self._lanes[session_id] = _Lane()
        lane.pending[run_id] = None
        return busy if mode is QueueMode.INTERRUPT else []

    def release(self, session_id: str, run_id: str) -> None:
        """Forget an admitted run that will never take its turn (refused by the store,
        cancelled while queued). Idempotent."""
        lane = self._lanes.get(session_id)
        if lane is None:
            return
        lane.pending.pop(run_id, None)
        if lane.held == run_id:
            _unhold(lane)
        self._drop_if_idle(session_id, lane)

    def hold(self, session_id: str, run_id: str) -> None:
        """``run_id`` paused (waiting for approval): keep the lane for it; later runs of the
        session wait until its next turn ends, ``release`` forgets it."""
        lane = self._lanes.get(session_id)
        if lane is None:
            lane = self._lanes[session_id] = _Lane()
        lane.pending.setdefault(run_id, None)
        lane.held = run_id
        lane.unheld = asyncio.Event()

    def held(self, session_id: str) -> str | None:
        lane = self._lanes.get(session_id)
        return lane.held if lane is not None else None

    def pending(self, session_id: str) -> list[str]:
        lane = self._lanes.get(session_id)
        return list(lane.pending) if lane is not None else []

    @asynccontextmanager
    async def turn(self, session_id: str, run_id: str) -> AsyncIterator[None]:
        """Wait until no other run of the session executes, then hold the lane. A run not
        admitted here (resumed after a restart) joins at the back."""
        lane = self._lanes.get(session_id)
        if lane is None:
            lane = self._lanes[session_id] = _Lane()
        lane.pending.setdefault(run_id, None)
        try:
            while True:
                while lane.held is not None and lane.held != run_id:
                    await lane.unheld.wait()
                await lane.lock.acquire()
                if lane.held is None or lane.held == run_id:
                    break
                lane.lock.release()  # a run paused while this one waited for the lock
            try:
                if lane.held == run_id:
                    _unhold(lane)  # resumed; ``hold`` again if it pauses again
                lane.active = run_id
                yield
            finally:
                lane.active = None
                lane.lock.release()
        finally:
            if lane.held != run_id:
                lane.pending.pop(run_id, None)
            self._drop_if_idle(session_id, lane)

    def _drop_if_idle(self, session_id: str, lane: _Lane) -> None:
        if not lane.pending and not lane.lock.locked() and self._lanes.get(session_id) is lane:
            del self._lanes[session_id]


def _unhold(lane: _Lane) -> None:
    lane.held = None
    lane.unheld.set()
