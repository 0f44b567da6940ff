"""The worker: claims queued runs from the store and carries them out, one at a time per
session, heartbeating while it works; at start it takes over the runs a previous process left
unfinished, and on shutdown it drains.

    worker = Worker(runs=store.runs, runner=runner, resolve=agent_of_run, lanes=lanes,
                    events=hub)
    await worker.start()      # resumes what a crash left behind
    worker.wake()             # a run was just queued: claim it now rather than at the next poll
    worker.cancel(run.id)     # stop at the next safe point
    await worker.close()      # drain: finish what fits in ``grace``, give the rest back

Every run goes through the store's queue, whoever submitted it (a waiting HTTP request, a
stream, a background job): one path, so a crash at any point leaves a run the next worker
resumes from its last checkpoint.

With ``takeover`` (the embedded default: one process owns the database) every run still
``RUNNING`` at start belonged to a process that is gone, and goes back to the queue at once.
Replicas sharing Postgres turn it off and rely on the heartbeat sweep (``stale_after``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable

import structlog
from structlog.typing import FilteringBoundLogger

from wayport.core.agent import AgentSpec, RunEvent, RunFinished
from wayport.core.clock import SystemClock
from wayport.core.errors import Conflict, NotFound, StoreError, WayportError
from wayport.core.ids import new_id
from wayport.core.session import DEFAULT_TENANT, Run, RunStatus
from wayport.ports import Clock, RunStore
from wayport.runtime.events import RunEvents
from wayport.runtime.lanes import Lanes
from wayport.runtime.runner import Runner

AgentResolver = Callable[[Run], Awaitable[AgentSpec]]
"""The agent a run executes (its pinned version where still known). Raises ``NotFound``."""
RunWatcher = Callable[[Run, AgentSpec], Callable[[RunEvent], None]]
"""Given each attempt of a run, an extra sink for its events (the audit trail)."""


def lane_key(tenant: str, session_id: str) -> str:
    """Sessions are per tenant: two tenants' sessions with one id never share a lane."""
    return f"{tenant}/{session_id}"


class Worker:
    def __init__(
        self,
        *,
        runs: RunStore,
        runner: Runner,
        resolve: AgentResolver,
        lanes: Lanes,
        events: RunEvents,
        worker_id: str | None = None,
        tenant: str = DEFAULT_TENANT,
        tenants: Callable[[], Iterable[str]] | None = None,
        watch: RunWatcher | None = None,
        concurrency: int = 64,
        poll_every: float = 1.0,
        heartbeat_every: float = 10.0,
        stale_after: float = 60.0,
        takeover: bool = True,
        shared: bool = False,
        clock: Clock | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.id = worker_id or new_id("worker")
        self._runs = runs
        self._runner = runner
        self._resolve = resolve
        self._lanes = lanes
        self._events = events
        self._tenant = tenant
        #: the tenants whose runs this worker claims (default: ``tenant`` alone)
        self._tenants = tenants if tenants is not None else (lambda: (tenant,))
        self._watch = watch
        self._tenant_of: dict[str, str] = {}
        self._concurrency = concurrency
        self._poll_every = poll_every
        self._heartbeat_every = heartbeat_every
        self._stale_after = stale_after
        self._takeover = takeover
        #: scale-out: other replicas claim from the same store, so every run goes through the
        #: (session-exclusive) claim, and a finished run may free a session's next one
        self._shared = shared
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._wall = wall
        self._wake = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping: set[str] = set()
        self._closing = False
        self._loops: list[asyncio.Task[None]] = []
        self._log: FilteringBoundLogger = structlog.get_logger("wayport.worker")

    @property
    def active(self) -> frozenset[str]:
        """Runs this worker holds now (executing or waiting for their session's lane)."""
        return frozenset(self._tasks)

    async def start(self) -> None:
        if self._takeover:
            # Everything RUNNING was claimed before this process started: its worker is gone.
            for tenant in list(self._tenants()):
                while await self._runs.requeue_stale(tenant, stale_before=self._wall() + 1.0):
                    pass
        for tenant in list(self._tenants()):  # pauses outlive restarts: so do their holds
            with contextlib.suppress(StoreError):
                for paused in await self._runs.unfinished(tenant, limit=1000):
                    if paused.status is RunStatus.REQUIRES_APPROVAL:
                        self._lanes.hold(lane_key(tenant, paused.session_id), paused.id)
        self._closing = False
        self._loops = [
            asyncio.create_task(self._claim_loop(), name=f"{self.id}-claim"),
            asyncio.create_task(self._heartbeat_loop(), name=f"{self.id}-heartbeat"),
        ]

    def wake(self) -> None:
        self._wake.set()

    def take(self, tenant: str, session_id: str, run_id: str) -> str | None:
        """This worker's id when it can execute ``run_id`` (admitted to its lane, not yet
        stored) at once: the run is then created claimed by it (``RunStore.create(worker=…)``)
        and handed over with ``adopt``, skipping the queue and the claim. ``None`` when the
        run must queue: the worker is full or closing, or an earlier run of the session is
        pending (its turn comes first). Shared (scale-out): the store has the last word, and
        creates the run queued when its session is busy on another replica (check the
        status before ``adopt``)."""
        if self._closing or not self._loops:
            return None
        if len(self._tasks) >= self._concurrency:
            return None
        if self._lanes.pending(lane_key(tenant, session_id)) != [run_id]:
            return None
        return self.id

    def tenant_of(self, run_id: str) -> str | None:
        """The tenant of a run this worker holds now, ``None`` for any other run."""
        return self._tenant_of.get(run_id)

    def adopt(self, run: Run, agent: AgentSpec) -> None:
        """Execute ``run``, just created claimed by this worker (see ``take``), as
        ``agent``; it has no steps yet, so none are read back."""
        self._tenant_of[run.id] = run.tenant_id
        self._tasks[run.id] = asyncio.create_task(self._execute(run, agent), name=run.id)

    def cancel(self, run_id: str) -> bool:
        """Ask a run held here to stop at its next safe point; ``False`` if not held here."""
        if run_id not in self._tasks:
            return False
        self._stopping.add(run_id)
        return True

    async def close(self, *, grace: float = 10.0) -> None:
        """Stop claiming, let active runs finish for up to ``grace`` seconds, then stop the
        rest and put them back in the queue (the next start resumes them)."""
        await self._stop_loops()
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        left = [run_id for run_id, task in self._tasks.items() if not task.done()]
        await self._cancel_tasks()
        for run_id in left:
            with contextlib.suppress(Conflict, NotFound, StoreError):
                await self._runs.transition(
                    self._tenant_of.get(run_id, self._tenant),
                    run_id,
                    RunStatus.QUEUED,
                    expected=(RunStatus.RUNNING,),
                )

    async def abort(self) -> None:
        """Stop everything at once and leave the store as it is, as a crash would."""
        await self._stop_loops()
        await self._cancel_tasks()

    async def _stop_loops(self) -> None:
        self._closing = True
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        self._loops = []

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _claim_loop(self) -> None:
        while not self._closing:
            self._wake.clear()
            free = self._concurrency - len(self._tasks)
            if self._shared:
                # one run per claim: replicas claiming at once share the queue out between
                # them rather than the first one awake taking every session's head
                free = min(free, 1)
            claimed: list[Run] = []
            if free > 0:
                try:
                    for tenant in list(self._tenants()):
                        if len(claimed) >= free:
                            break
                        claimed += await self._runs.claim(
                            tenant, worker=self.id, limit=free - len(claimed)
                        )
                except StoreError as exc:
                    self._log.warning("claim failed", error=exc.message)
            for run in claimed:
                self._tenant_of[run.id] = run.tenant_id
                self._tasks[run.id] = asyncio.create_task(self._execute(run), name=run.id)
            if claimed and len(claimed) == free:
                continue  # there may be more
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_every):
                    await self._wake.wait()

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._clock.sleep(self._heartbeat_every)
            for run_id in list(self._tasks):
                try:
                    tenant = self._tenant_of.get(run_id, self._tenant)
                    await self._runs.heartbeat(tenant, run_id, worker=self.id)
                except (Conflict, NotFound):
                    self._stopping.add(run_id)  # no longer ours: stop at the next safe point
                except StoreError as exc:
                    self._log.warning("heartbeat failed", run_id=run_id, error=exc.message)
            if not self._takeover:
                try:
                    for tenant in list(self._tenants()):
                        await self._runs.requeue_stale(
                            tenant, stale_before=self._wall() - self._stale_after
                        )
                except StoreError as exc:
                    self._log.warning("stale sweep failed", error=exc.message)

    async def _execute(self, run: Run, adopted: AgentSpec | None = None) -> None:
        try:
            async with self._lanes.turn(lane_key(run.tenant_id, run.session_id), run.id):
                agent = adopted if adopted is not None else await self._resolve(run)
                ended = await self._runner.execute(
                    run,
                    agent,
                    emit=self._sink(run, agent),
                    stop=lambda: run.id in self._stopping,
                    worker=self.id,
                    fresh=adopted is not None,
                )
                if ended.run.status is RunStatus.REQUIRES_APPROVAL:
                    # the session's later runs wait for the decision (see ``Lanes.hold``)
                    self._lanes.hold(lane_key(run.tenant_id, run.session_id), run.id)
        except Conflict as exc:
            self._log.info("run taken away", run_id=run.id, reason=exc.message)
            await self._settle(run, None)
        except NotFound as exc:
            await self._settle(run, f"cannot run: {exc.message}")
        except StoreError as exc:
            # left RUNNING: the heartbeat stops, and the next start or sweep requeues it
            self._log.warning("store failed during run", run_id=run.id, error=exc.message)
        except WayportError as exc:
            self._log.error("run failed", run_id=run.id, error=exc.message)
            await self._settle(run, f"internal error: {exc.message}")
        except Exception:  # noqa: BLE001 - a bug in a run must not take the worker down
            self._log.exception("run crashed", run_id=run.id)
            await self._settle(run, "internal error")
        finally:
            full = len(self._tasks) >= self._concurrency
            self._tasks.pop(run.id, None)
            self._tenant_of.pop(run.id, None)
            self._stopping.discard(run.id)
            if full or self._shared:
                # room again for queued runs; otherwise nothing waits on this (submit wakes
                # the loop for each run it queues), and a claim is a write transaction.
                # Shared: the session's next run became claimable (exclusive claims)
                self._wake.set()

    def _sink(self, run: Run, agent: AgentSpec) -> Callable[[RunEvent], None]:
        events = self._events
        if self._watch is None:
            return lambda event: events.emit(run.id, event)
        watcher = self._watch(run, agent)

        def both(event: RunEvent) -> None:
            watcher(event)
            events.emit(run.id, event)

        return both

    async def _settle(self, run: Run, error: str | None) -> None:
        """Fail the run (when ``error``) and tell its followers how it ended."""
        final: Run | None = None
        with contextlib.suppress(Conflict, NotFound, StoreError):
            if error is not None:
                final = await self._runs.transition(
                    run.tenant_id,
                    run.id,
                    RunStatus.FAILED,
                    expected=(RunStatus.RUNNING,),
                    error=error,
                )
            else:
                final = await self._runs.get(run.tenant_id, run.id)
        if final is not None and final.status.finished:
            self._events.emit(run.id, RunFinished(run=final))
