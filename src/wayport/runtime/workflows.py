"""The durable workflow engine: claims runs, asks the pure scheduler what to do, executes
effect steps, checkpoints every step's result, parks runs that wait.

    engine = WorkflowEngine(store=store, definitions=catalog.current, effects=effects)
    await engine.start()          # sweeps runs a dead process held, then claims and drives
    engine.wake(tenant)           # a run was created or woken: claim now rather than at the poll
    await engine.close()          # stops driving; every run stays durable for the next start

Delivery is **at least once** per step: a step's output is checkpointed (one transaction) as
soon as it returns, and a run resumed after a crash starts only the steps without a
checkpoint. A step that was executing when the process died runs again, with the same
idempotency key (``core.workflow_run.step_key``: a hash of run id and step path, the same for
every attempt), so a tool can recognise the repeat. No step runs again after its checkpoint.

This module claims runs and keeps their claims alive (heartbeats, the stale sweep); driving
one claimed run lives in ``runtime.workflow_driver``, the effect steps' calls in
``runtime.workflow_effects``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable

import structlog

from wayport.core.errors import WayportError
from wayport.core.ids import new_id
from wayport.core.workflow import WorkflowDef
from wayport.core.workflow_run import WorkflowRun
from wayport.ports import WorkflowObserver, WorkflowStore
from wayport.runtime.workflow_driver import NoObserver, RunDriver, child_run_id
from wayport.runtime.workflow_effects import AgentCall, Effects, StepFailed

__all__ = ["AgentCall", "Effects", "StepFailed", "WorkflowEngine", "child_run_id"]

_log = structlog.get_logger("wayport.workflows")


class WorkflowEngine(RunDriver):
    def __init__(
        self,
        *,
        store: WorkflowStore,
        definitions: Callable[[str], WorkflowDef | None],
        effects: Effects,
        observer: WorkflowObserver | None = None,
        on_finished: Callable[[WorkflowRun], Awaitable[None]] | None = None,
        now: Callable[[], float] = time.time,
        worker_id: str | None = None,
        concurrency: int = 64,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 5.0,
        stale_after: float = 30.0,
        sweep_on_start: bool = True,
        tenants: tuple[str, ...] = (),
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """``definitions``: the current definition of a workflow by name (a run on an older
        version loads its own from the store). ``sweep_on_start``: requeue every run another
        process held — right for one process per database; replicas rely on the stale
        sweep (``stale_after``) instead."""
        self.id = worker_id or new_id("wfworker")
        self._store = store
        self._definitions = definitions
        self._effects = effects
        self._observer = observer or NoObserver()
        self._on_finished = on_finished
        self._now = now
        self._concurrency = concurrency
        self._poll = poll_interval
        self._heartbeat_interval = heartbeat_interval
        self._stale_after = stale_after
        self._sweep_on_start = sweep_on_start
        self._jitter = jitter
        self._tenants: set[str] = set(tenants)
        self._versions = {}
        self._waiting = {}
        self._drivers: dict[str, tuple[str, asyncio.Task[None], asyncio.Event]] = {}
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.steps_executed = 0  #: effect-step attempts started by this engine

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._tenants.update(await self._store.active_tenants())
        if self._sweep_on_start:
            for tenant in sorted(self._tenants):
                await self._store.requeue_stale(tenant, stale_before=self._now() + 1.0)
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="wayport-workflows-claim"),
            asyncio.create_task(self._heartbeat_loop(), name="wayport-workflows-heartbeat"),
        ]

    async def close(self) -> None:
        self._closing = True
        tasks = self._tasks + [task for _, task, _ in self._drivers.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def wake(self, tenant: str) -> None:
        """Claim now: ``tenant`` has a run ready."""
        self._tenants.add(tenant)
        self._wakeup.set()

    def nudge(self, tenant: str, run_id: str) -> None:
        """A step of ``run_id`` was resolved from outside: re-read it."""
        driver = self._drivers.get(run_id)
        if driver is not None:
            driver[2].set()
        self.wake(tenant)

    @property
    def active(self) -> int:
        return len(self._drivers)

    # ------------------------------------------------------------------ claiming

    async def _claim_loop(self) -> None:
        while not self._closing:
            self._wakeup.clear()
            for tenant in sorted(self._tenants):
                free = self._concurrency - len(self._drivers)
                if free <= 0:
                    break
                try:
                    claimed = await self._store.claim(tenant, worker=self.id, limit=free)
                except WayportError as exc:
                    _log.warning("workflow claim failed", error=exc.message)
                    claimed = []
                for run in claimed:
                    nudged = asyncio.Event()
                    task = asyncio.create_task(self._drive(run, nudged), name=f"wf-{run.id}")
                    self._drivers[run.id] = (tenant, task, nudged)
                    task.add_done_callback(self._driver_done_callback(run.id))
                if len(claimed) >= free:
                    self._wakeup.set()  # there may be more: claim again after a turn
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._poll)

    def _driver_done_callback(self, run_id: str) -> Callable[[asyncio.Task[None]], None]:
        return lambda _task: self._driver_done(run_id)

    def _driver_done(self, run_id: str) -> None:
        entry = self._drivers.pop(run_id, None)
        if entry is not None and not entry[1].cancelled() and entry[1].exception() is not None:
            _log.error("workflow driver crashed", run_id=run_id, error=repr(entry[1].exception()))
        self._wakeup.set()

    async def _heartbeat_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self._heartbeat_interval)
            by_tenant: dict[str, dict[str, asyncio.Task[None]]] = {}
            for run_id, (tenant, task, _) in list(self._drivers.items()):
                by_tenant.setdefault(tenant, {})[run_id] = task
            for tenant in sorted(self._tenants):
                driving = by_tenant.get(tenant, {})
                try:
                    held = await self._store.heartbeat(tenant, list(driving), worker=self.id)
                    for run_id in driving.keys() - held:
                        # lost it (another worker has it), or it finished meanwhile; a driver
                        # that ended is gone from ``_drivers`` and a new one is not this task
                        entry = self._drivers.get(run_id)
                        if entry is not None and entry[1] is driving[run_id]:
                            entry[1].cancel()
                    await self._store.requeue_stale(
                        tenant, stale_before=self._now() - self._stale_after
                    )
                except WayportError as exc:
                    _log.warning("workflow heartbeat failed", error=exc.message)
