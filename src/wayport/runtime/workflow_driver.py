"""Driving one workflow run: ask the pure scheduler (``core.workflow_plan.next_steps``) what
to do, checkpoint its decisions, execute effect steps, park the run when it only waits, finish
it. ``WorkflowEngine`` (``runtime.workflows``) claims runs and hands each to ``_drive``.

The observer hears of every step: ``step_started`` when an effect step starts or a step begins
to wait (an approval, a timer, a sub-workflow), ``step_finished`` when it settles, including a
wait resolved from outside (seen when the run is read again here).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import structlog

from wayport.core.errors import Conflict, NotFound, WayportError
from wayport.core.workflow import StepKind, WorkflowDef, parse_workflow
from wayport.core.workflow_plan import (
    DONE,
    Execute,
    Record,
    StepStatus,
    context,
    next_steps,
    run_output,
)
from wayport.core.workflow_run import StepRow, WorkflowRun, WorkflowStatus, step_key
from wayport.ports import WorkflowObserver, WorkflowStore
from wayport.runtime.workflow_effects import Effects, StepFailed, run_effect

__all__ = ["RunDriver", "child_run_id"]

_log = structlog.get_logger("wayport.workflows")


class NoObserver:
    def step_started(self, run: WorkflowRun, path: str, kind: str, attempt: int) -> None:
        pass

    def step_finished(
        self,
        run: WorkflowRun,
        path: str,
        kind: str,
        status: str,
        seconds: float,
        error: str | None,
    ) -> None:
        pass

    def run_finished(self, run: WorkflowRun) -> None:
        pass


def child_run_id(run_id: str, path: str) -> str:
    """The sub-workflow run of one step: derived, so a repeated step finds its child."""
    return "wfr-" + step_key(run_id, path).removeprefix("wf-")[:24]


class RunDriver:
    """The run-driving half of ``WorkflowEngine``; the engine sets these attributes."""

    id: str
    steps_executed: int
    _store: WorkflowStore
    _definitions: Callable[[str], WorkflowDef | None]
    _effects: Effects
    _observer: WorkflowObserver
    _on_finished: Callable[[WorkflowRun], Awaitable[None]] | None
    _now: Callable[[], float]
    _jitter: Callable[[], float]
    _versions: dict[tuple[str, str, str], WorkflowDef]
    _waiting: dict[str, set[str]]  #: run id -> paths this process saw begin to wait

    def wake(self, tenant: str) -> None:
        raise NotImplementedError

    def nudge(self, tenant: str, run_id: str) -> None:
        raise NotImplementedError

    async def definition(self, tenant: str, name: str, version: str) -> WorkflowDef:
        """The definition a run started on (``NotFound`` when neither config nor store has
        that version)."""
        key = (tenant, name, version)
        found = self._versions.get(key)
        if found is not None:
            return found
        current = self._definitions(name)
        if current is not None and current.version == version:
            found = current
        else:
            source = await self._store.definition(tenant, name, version)
            if source is None:
                raise NotFound(f"workflow {name!r} version {version} is not stored")
            found = parse_workflow(name, source)
        self._versions[key] = found
        return found

    async def _drive(self, run: WorkflowRun, nudged: asyncio.Event) -> None:
        tenant = run.tenant_id
        try:
            definition = await self.definition(tenant, run.workflow, run.version)
        except WayportError as exc:
            await self._finish(run, WorkflowStatus.FAILED, error=exc.message)
            return
        rows = {r.path: r for r in await self._store.steps(tenant, run.id)}
        self._report_resolved(run, rows)
        flying: dict[str, asyncio.Task[StepRow]] = {}
        waiter: asyncio.Task[bool] | None = None
        try:
            while True:
                states = {p: r.state for p, r in rows.items()}
                plan = next_steps(
                    definition,
                    run.input,
                    states,
                    now=self._now(),
                    in_flight=flying.keys(),
                    run_id=run.id,
                )
                if plan.failed is not None:
                    await self._finish(run, WorkflowStatus.FAILED, error=plan.failed)
                    return
                if plan.finished:
                    ctx_states = {p: r.state for p, r in rows.items()}
                    output = run_output(definition, context(definition, run.input, ctx_states))
                    await self._finish(run, WorkflowStatus.COMPLETED, output=output)
                    return
                if plan.record or plan.execute:
                    await self._apply(run, definition, plan.record, plan.execute, rows, flying)
                    continue
                if not flying:
                    parked = await self._store.park(
                        tenant, run.id, worker=self.id, revision=run.revision, wake_at=plan.wake_at
                    )
                    if parked:
                        return
                    run, rows = await self._reload(run)
                    continue
                if waiter is None or waiter.done():
                    waiter = asyncio.create_task(nudged.wait())
                timeout = None if plan.wake_at is None else max(plan.wake_at - self._now(), 0)
                await asyncio.wait(
                    [*flying.values(), waiter], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for path, task in list(flying.items()):
                    if task.done():
                        del flying[path]
                        rows[path] = task.result()
                if nudged.is_set():
                    nudged.clear()
                    run, fresh = await self._reload(run)
                    rows.update({p: r for p, r in fresh.items() if p not in flying})
        except Conflict as exc:
            _log.info("workflow run lost its claim", run_id=run.id, reason=exc.message)
        finally:
            for task in flying.values():
                task.cancel()
            if waiter is not None:
                waiter.cancel()

    async def _reload(self, run: WorkflowRun) -> tuple[WorkflowRun, dict[str, StepRow]]:
        fresh = await self._store.get(run.tenant_id, run.id)
        if fresh is None:
            raise Conflict(f"workflow run {run.id} disappeared")
        rows = {r.path: r for r in await self._store.steps(run.tenant_id, run.id)}
        self._report_resolved(fresh, rows)
        return fresh, rows

    def _report_resolved(self, run: WorkflowRun, rows: dict[str, StepRow]) -> None:
        """Waits this process saw begin and that were settled since (an approval)."""
        waiting = self._waiting.get(run.id)
        if not waiting:
            return
        for path in sorted(waiting):
            row = rows.get(path)
            if row is None or row.status not in DONE:
                continue
            waiting.discard(path)
            took = (row.finished_at or 0.0) - (row.started_at or 0.0)
            self._observer.step_finished(
                run, path, row.kind, row.status.value, max(took, 0.0), row.error
            )

    async def _apply(
        self,
        run: WorkflowRun,
        definition: WorkflowDef,
        records: list[Record],
        executes: list[Execute],
        rows: dict[str, StepRow],
        flying: dict[str, asyncio.Task[StepRow]],
    ) -> None:
        """Checkpoint the scheduler's decisions and the starts of effect steps (one write),
        then launch the effect steps."""
        t = self._now()
        out: list[StepRow] = []
        for rec in records:
            step_id, index = _split(rec.path)
            prior = rows.get(rec.path)
            out.append(
                StepRow(
                    path=rec.path,
                    step_id=step_id,
                    item_index=index,
                    kind=definition.step(step_id).kind.value,
                    status=rec.status,
                    output=rec.output,
                    error=rec.error,
                    attempt=prior.attempt if prior else 0,
                    wake_at=rec.wake_at,
                    started_at=prior.started_at if prior and prior.started_at else t,
                    finished_at=t if rec.status in DONE else None,
                )
            )
        for ex in executes:
            step_id, index = _split(ex.path)
            out.append(
                StepRow(
                    path=ex.path,
                    step_id=step_id,
                    item_index=index,
                    kind=ex.step.kind.value,
                    status=StepStatus.RUNNING,
                    attempt=ex.attempt,
                    idempotency_key=step_key(run.id, ex.path),
                    started_at=t,
                )
            )
        await self._store.save_steps(run.tenant_id, run.id, out, worker=self.id)
        for row in out:
            rows[row.path] = row
            waiting = self._waiting.get(run.id, set())
            if row.status is StepStatus.RUNNING:
                self._observer.step_started(run, row.path, row.kind, row.attempt)
            elif row.status is StepStatus.WAITING and row.path not in waiting:
                self._waiting.setdefault(run.id, set()).add(row.path)
                self._observer.step_started(run, row.path, row.kind, row.attempt)
            elif row.status in DONE:
                waiting.discard(row.path)
                self._observer.step_finished(
                    run, row.path, row.kind, row.status.value, 0.0, row.error
                )
        for ex in executes:
            flying[ex.path] = asyncio.create_task(self._execute(run, ex, rows[ex.path]))

    async def _execute(self, run: WorkflowRun, ex: Execute, started: StepRow) -> StepRow:
        """One attempt of an effect step, and its checkpoint."""
        began = self._now()
        self.steps_executed += 1
        key = step_key(run.id, ex.path)
        step = ex.step
        try:
            async with asyncio.timeout(step.timeout):
                if step.kind is StepKind.WORKFLOW:
                    return await self._start_child(run, ex, started)
                output = await run_effect(self._effects, run, ex, key)
        except (StepFailed, WayportError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                error = f"timed out after {step.timeout}s"
            elif isinstance(exc, WayportError):
                error = exc.message
            else:
                error = str(exc)
            row = self._failed(started, ex, error)
        else:
            row = _replace(started, status=StepStatus.COMPLETED, output=output, error=None)
        row = _replace(row, finished_at=self._now() if row.status in DONE else None)
        await self._store.save_steps(run.tenant_id, run.id, [row], worker=self.id)
        self._observer.step_finished(
            run, ex.path, row.kind, row.status.value, self._now() - began, row.error
        )
        return row

    def _failed(self, started: StepRow, ex: Execute, error: str) -> StepRow:
        if ex.attempt < ex.step.retry.max_attempts:
            wake_at = self._now() + ex.step.retry.delay(ex.attempt, self._jitter())
            return _replace(started, status=StepStatus.RETRY, error=error, wake_at=wake_at)
        attempts = f" (after {ex.attempt} attempts)" if ex.attempt > 1 else ""
        return _replace(started, status=StepStatus.FAILED, error=error + attempts)

    async def _start_child(self, run: WorkflowRun, ex: Execute, started: StepRow) -> StepRow:
        name = str(ex.params["workflow"])
        current = self._definitions(name)
        if current is None:
            raise StepFailed(f"no workflow named {name!r}")
        child_id = child_run_id(run.id, ex.path)
        child, _ = await self._store.create_run(
            run.tenant_id,
            run_id=child_id,
            workflow=name,
            version=current.version,
            definition=current.source,
            input=ex.params.get("input") or {},
            trigger="workflow",
            parent_run_id=run.id,
            parent_step=ex.path,
        )
        waiting = _replace(started, status=StepStatus.WAITING, output={"run_id": child_id})
        await self._store.save_steps(run.tenant_id, run.id, [waiting], worker=self.id)
        self.wake(run.tenant_id)
        # the child may have finished before this step was waiting for it: settle it here
        child = await self._store.get(run.tenant_id, child_id) or child
        if child.status.finished:
            return await self._settle_parent_step(child) or waiting
        return waiting

    async def _settle_parent_step(self, child: WorkflowRun) -> StepRow | None:
        if child.parent_run_id is None or child.parent_step is None:
            return None
        ok = child.status is WorkflowStatus.COMPLETED
        try:
            await self._store.resolve_step(
                child.tenant_id,
                child.parent_run_id,
                child.parent_step,
                status=StepStatus.COMPLETED if ok else StepStatus.FAILED,
                output=child.output if ok else None,
                error=None if ok else f"sub-workflow {child.id} {child.status}: {child.error}",
            )
        except (Conflict, NotFound):
            return None  # settled already, or not waiting yet (its step settles it then)
        self.nudge(child.tenant_id, child.parent_run_id)
        return None

    async def _finish(
        self,
        run: WorkflowRun,
        status: WorkflowStatus,
        *,
        output: Any = None,
        error: str | None = None,
    ) -> None:
        done = await self._store.finish(
            run.tenant_id, run.id, status, worker=self.id, output=output, error=error
        )
        self._waiting.pop(run.id, None)
        self._observer.run_finished(done)
        await self._settle_parent_step(done)
        if self._on_finished is not None:
            try:
                await self._on_finished(done)
            except WayportError as exc:
                _log.warning("workflow completion hook failed", run_id=run.id, error=exc.message)


def _split(path: str) -> tuple[str, int | None]:
    if path.endswith("]") and "[" in path:
        step_id, _, index = path[:-1].partition("[")
        return step_id, int(index)
    return path, None


def _replace(row: StepRow, **changes: Any) -> StepRow:
    return replace(row, **changes)
