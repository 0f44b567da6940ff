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
from collections.abc import Awaitable, Callable

import structlog
from structlog.typing import FilteringBoundLogger

from wayport.core.agent import AgentSpec, RunFinished
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
        concurrency: int = 64,
        poll_every: float = 1.0,
        heartbeat_every: float = 10.0,
        stale_after: float = 60.0,
        takeover: bool = True,
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
        self._concurrency = concurrency
        self._poll_every = poll_every
        self._heartbeat_every = heartbeat_every
        self._stale_after = stale_after
        self._takeover = takeover
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
            while await self._runs.requeue_stale(self._tenant, stale_before=self._wall() + 1.0):
                pass
        self._closing = False
        self._loops = [
            asyncio.create_task(self._claim_loop(), name=f"{self.id}-claim"),
            asyncio.create_task(self._heartbeat_loop(), name=f"{self.id}-heartbeat"),
        ]

    def wake(self) -> None:
        self._wake.set()

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
                    self._tenant, run_id, RunStatus.QUEUED, expected=(RunStatus.RUNNING,)
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
            claimed: list[Run] = []
            if free > 0:
                try:
                    claimed = await self._runs.claim(self._tenant, worker=self.id, limit=free)
                except StoreError as exc:
                    self._log.warning("claim failed", error=exc.message)
            for run in claimed:
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
                    await self._runs.heartbeat(self._tenant, run_id, worker=self.id)
                except (Conflict, NotFound):
                    self._stopping.add(run_id)  # no longer ours: stop at the next safe point
                except StoreError as exc:
                    self._log.warning("heartbeat failed", run_id=run_id, error=exc.message)
            if not self._takeover:
                try:
                    await self._runs.requeue_stale(
                        self._tenant, stale_before=self._wall() - self._stale_after
                    )
                except StoreError as exc:
                    self._log.warning("stale sweep failed", error=exc.message)

    async def _execute(self, run: Run) -> None:
        try:
            async with self._lanes.turn(run.session_id, run.id):
                agent = await self._resolve(run)
                await self._runner.execute(
                    run,
                    agent,
                    emit=lambda event: self._events.emit(run.id, event),
                    stop=lambda: run.id in self._stopping,
                    worker=self.id,
                )
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
            self._tasks.pop(run.id, None)
            self._stopping.discard(run.id)
            self._wake.set()

    async def _settle(self, run: Run, error: str | None) -> None:
        """Fail the run (when ``error``) and tell its followers how it ended."""
        final: Run | None = None
        with contextlib.suppress(Conflict, NotFound, StoreError):
            if error is not None:
                final = await self._runs.transition(
                    self._tenant,
                    run.id,
                    RunStatus.FAILED,
                    expected=(RunStatus.RUNNING,),
                    error=error,
                )
            else:
                final = await self._runs.get(self._tenant, run.id)
        if final is not None and final.status.finished:
            self._events.emit(run.id, RunFinished(run=final))
