"""Scale-out: what changes when several replicas share one Postgres database (and Redis).

    cluster = Cluster(bus=RedisBus(url, prefix="wayport:"), heartbeat_every=3, stale_after=15)
    service = AgentService(..., cluster=cluster)
    security = Security.build(stores, revocations=cluster.revocations())
    cluster.on_revoke(security.keys.forget)

- runs are claimed, never created claimed, and a claim takes a session's oldest queued run
  only while no other run of the session is running anywhere (``exclusive_sessions``);
- each replica heartbeats the runs it holds every ``heartbeat_every`` seconds, and sweeps
  (``SKIP LOCKED``) runs whose heartbeat is older than ``stale_after`` back into the queue:
  the runs of a replica that died resume elsewhere from their last checkpoint;
- no replica takes over every ``RUNNING`` run at start (the others are alive);
- with a bus, run events, cancellations and key revocations reach every replica, and a run
  queued on one replica wakes every replica's worker (``QUEUED_TOPIC``) rather than waiting
  for their next poll;
- a session's queue (the agent's ``queue_mode``/``max_queue``) counts the session's unfinished
  runs in the store (``pending``), not only those this replica admitted: replicas admitting
  at the same instant may overshoot ``max_queue`` by at most one run each other replica;
- ``close`` closes what the cluster holds (the bus and the Redis limiter) once the runs have
  drained.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from wayport.core.agent import QueueMode
from wayport.core.errors import Conflict, RateLimited, StoreError
from wayport.core.ids import new_id
from wayport.ports import Bus

CANCEL_TOPIC = "cancel"  #: message: a run id; the replica holding it stops it
REVOKE_TOPIC = "revoke"  #: message: ``tenant NUL key_id``; every replica drops its cache
QUEUED_TOPIC = "queued"  #: message: the id of the replica that queued a run; others claim

PendingRuns = Callable[[object, str, str, int], Awaitable[list[str]]]
"""``(stores, tenant, session_id, limit)`` (``stores``: the agent service's open stores):
ids of the session's unfinished runs in the store, oldest first, at most ``limit``
(``wayport.store.session_queue.pending_runs``)."""


@runtime_checkable
class _Closing(Protocol):
    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Cluster:
    bus: Bus | None = None  #: None: Postgres only; events and cancellation stay per replica
    heartbeat_every: float = 3.0
    stale_after: float = 15.0
    poll_every: float = 1.0  #: the worker's claim poll (the bus wakes it sooner)
    pending: PendingRuns | None = None  #: None: queue limits count this replica's runs only
    limiter: object | None = None  #: closed with the cluster (the Redis limiter)
    replica: str = field(default_factory=lambda: new_id("replica"))
    _announcing: set[asyncio.Task[None]] = field(default_factory=set, repr=False)
    #: per session: admissions on this replica in turn, from the count to the stored run
    _gates: dict[str, tuple[asyncio.Lock, list[int]]] = field(default_factory=dict, repr=False)

    def on_queued(self, wake: Callable[[], None]) -> None:
        """Call ``wake()`` when another replica queues a run (its worker may be full, or the
        run's session busy here: a worker with room claims it now, not at its next poll)."""
        if self.bus is None:
            return
        me = self.replica

        def handle(message: str) -> None:
            if message != me:
                wake()

        self.bus.subscribe(QUEUED_TOPIC, handle)

    def announce_queued(self) -> None:
        """Tell the other replicas a run was queued; in the background: the run is stored
        already, and a lost notice only delays it until the next poll."""
        if self.bus is None:
            return
        task = asyncio.create_task(self.announce(), name="wayport-announce-queued")
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    async def announce(self) -> None:
        """``announce_queued``, awaited: a draining replica handed runs back to the queue."""
        if self.bus is None:
            return
        with contextlib.suppress(StoreError):  # logged by the bus; the poll still finds it
            await self.bus.publish(QUEUED_TOPIC, self.replica)

    async def admit(
        self,
        stores: object,
        tenant: str,
        session_id: str,
        run_id: str,
        *,
        lane: str,
        mode: QueueMode,
        max_queue: int,
    ) -> list[str]:
        """The session's queue rule (``wayport.runtime.lanes``) over its unfinished runs on
        every replica, as the store holds them. Raises ``Conflict`` (``REJECT`` while busy)
        or ``RateLimited`` (queue full);
        returns the runs ``INTERRUPT`` cancels, oldest first. Once admitted, the caller
        stores the run and then calls ``admitted(lane)`` (whether storing succeeded or not):
        till then the session's next admission on this replica waits, so it counts this run,
        and only one admission per replica is ever unaccounted for."""
        gate, users = self._gates.setdefault(lane, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            await gate.acquire()
        except BaseException:
            self._leave(lane)
            raise
        try:
            return await self._admit(stores, tenant, session_id, run_id, mode, max_queue)
        except BaseException:
            self.admitted(lane)
            raise

    def admitted(self, lane: str) -> None:
        """The run ``admit`` let in is stored (or failed to be): the next may be counted."""
        found = self._gates.get(lane)
        if found is not None and found[0].locked():
            found[0].release()
            self._leave(lane)

    def _leave(self, lane: str) -> None:
        found = self._gates.get(lane)
        if found is not None:
            found[1][0] -= 1
            if found[1][0] <= 0:
                del self._gates[lane]

    async def _admit(
        self,
        stores: object,
        tenant: str,
        session_id: str,
        run_id: str,
        mode: QueueMode,
        max_queue: int,
    ) -> list[str]:
        if self.pending is None:
            return []
        stored = await self.pending(stores, tenant, session_id, max_queue + 2)
        busy = [r for r in stored if r != run_id]
        if busy and mode is QueueMode.REJECT:
            raise Conflict(
                f"session {session_id} already has a run in progress", code="session_busy"
            )
        if mode is QueueMode.ENQUEUE and len(busy) > max_queue:
            raise RateLimited(
                f"session {session_id} has {len(busy)} runs waiting (at most {max_queue})",
                code="session_queue_full",
            )
        return busy if mode is QueueMode.INTERRUPT else []

    async def close(self) -> None:
        """Close the bus and the limiter (after the runs drained: their last events and
        settlements go out first)."""
        for task in list(self._announcing):
            task.cancel()
        try:
            if self.bus is not None:
                await self.bus.close()
        finally:
            if isinstance(self.limiter, _Closing):
                await self.limiter.close()

    def revocations(self) -> BusRevocations | None:
        return BusRevocations(self.bus) if self.bus is not None else None

    def on_revoke(self, forget: Callable[[str, str], None]) -> None:
        """Call ``forget(tenant, key_id)`` for every key revoked on any replica."""
        if self.bus is None:
            return

        def handle(message: str) -> None:
            tenant, _, key_id = message.partition("\0")
            if key_id:
                forget(tenant, key_id)

        self.bus.subscribe(REVOKE_TOPIC, handle)


class BusRevocations:
    """``wayport.service.keys.KeyRevocations`` over the bus."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def publish(self, tenant: str, key_id: str) -> None:
        await self._bus.publish(REVOKE_TOPIC, f"{tenant}\0{key_id}")
