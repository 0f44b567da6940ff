"""The workflow use cases: the catalog of definitions, starting runs from any trigger (the API,
a channel binding, a cron schedule, an inbound webhook), reading their progress, approving
their pauses, cancelling them. No HTTP in here; ``wayport.server.workflows_api`` translates.

    service = WorkflowService(catalog=WorkflowCatalog([WorkflowSpec(definition=d)]),
                              open_store=open_workflow_store, effects=effects)
    await service.start()                     # resumes unfinished runs, starts the cron timers
    run = await service.start_run("default", "triage", {"ticket": "…"})
    await service.approve("default", run.id, approved=True, by="ops@example.com")
    await service.close()

``start_run`` returns once the run is stored: a crash after it loses nothing. Runs started
with an idempotency key (cron fires, webhook deliveries, channel messages carry one) get an id
derived from it, so the same event starts one run however often it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
import structlog

from wayport.core.cron import CronSchedule
from wayport.core.errors import AuthError, Conflict, InvalidRequest, NotFound, WayportError
from wayport.core.ids import new_id
from wayport.core.session import DEFAULT_TENANT
from wayport.core.workflow import StepKind, WorkflowDef, check_input
from wayport.core.workflow_plan import StepStatus
from wayport.core.workflow_run import StepRow, WorkflowRun, WorkflowStatus
from wayport.net.guard import GuardedClient
from wayport.ports import WorkflowObserver, WorkflowStore
from wayport.runtime.tools import ToolRegistry
from wayport.runtime.workflows import Effects, WorkflowEngine

__all__ = [
    "CompletionHook",
    "WorkflowCatalog",
    "WorkflowService",
    "WorkflowSpec",
    "WorkflowStoreHandle",
]

_log = structlog.get_logger("wayport.workflows")
SIGNATURE_HEADER = "x-wayport-signature"


@dataclass(frozen=True, slots=True, kw_only=True)
class CompletionHook:
    """Where a finished run is POSTed (``on_complete``); signed when a secret is set."""

    url: str
    secret: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowSpec:
    definition: WorkflowDef
    cron: tuple[CronSchedule, ...] = ()
    tenant: str = DEFAULT_TENANT  #: the tenant cron and webhook runs belong to
    webhook_secret: str | None = None  #: inbound webhooks are refused without one
    on_complete: CompletionHook | None = None


class WorkflowCatalog:
    def __init__(self, specs: Iterable[WorkflowSpec] = ()) -> None:
        self._specs: dict[str, WorkflowSpec] = {}
        for spec in specs:
            self.put(spec)

    def put(self, spec: WorkflowSpec) -> None:
        self._specs[spec.definition.name] = spec

    def list(self) -> list[WorkflowSpec]:
        return list(self._specs.values())

    def get(self, name: str) -> WorkflowSpec:
        found = self._specs.get(name)
        if found is None:
            raise NotFound(f"The workflow {name!r} does not exist", code="workflow_not_found")
        return found

    def current(self, name: str) -> WorkflowDef | None:
        found = self._specs.get(name)
        return None if found is None else found.definition


class WorkflowStoreHandle(Protocol):
    @property
    def workflows(self) -> WorkflowStore: ...

    async def close(self) -> None: ...


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: the HMAC of a webhook body, inbound and outbound."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def derived_run_id(tenant: str, workflow: str, key: str) -> str:
    digest = hashlib.sha256(f"{tenant}\0{workflow}\0{key}".encode()).hexdigest()
    return f"wfr-{digest[:24]}"


class WorkflowService:
    def __init__(
        self,
        *,
        catalog: WorkflowCatalog,
        open_store: Callable[[], Awaitable[WorkflowStoreHandle]],
        effects: Effects,
        observer: WorkflowObserver | None = None,
        client: GuardedClient | None = None,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        """``client``: sends completion webhooks (required when a workflow has
        ``on_complete``). ``wall``/``sleep``: the clock of the cron timers (tests pass a
        ``ManualClock``'s). ``engine_options``: keyword arguments for ``WorkflowEngine``."""
        self.catalog = catalog
        self._open_store = open_store
        self._effects = effects
        self._observer = observer
        self._client = client
        self._wall = wall
        self._sleep = sleep
        self._engine_options = dict(engine_options or {})
        self._handle: WorkflowStoreHandle | None = None
        self._engine: WorkflowEngine | None = None
        self._cron: asyncio.Task[None] | None = None
        self.cron_fired: list[tuple[str, float]] = []  #: (workflow, fire time), for operators

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        tools = self._effects.tools
        if isinstance(tools, ToolRegistry):
            await tools.start()
        try:
            handle = await self._open_store()
        except BaseException:
            if isinstance(tools, ToolRegistry):
                await tools.close()
            raise
        engine = WorkflowEngine(
            store=handle.workflows,
            definitions=self.catalog.current,
            effects=self._effects,
            observer=self._observer,
            on_finished=self._completed,
            **self._engine_options,
        )
        try:
            await engine.start()
        except BaseException:
            await handle.close()
            raise
        self._handle, self._engine = handle, engine
        if self._client is not None:
            await self._client.start()
        if any(spec.cron for spec in self.catalog.list()):
            self._cron = asyncio.create_task(self._cron_loop(), name="wayport-workflow-cron")

    async def close(self) -> None:
        cron, self._cron = self._cron, None
        if cron is not None:
            cron.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cron
        engine, handle = self._engine, self._handle
        self._engine = self._handle = None
        try:
            if engine is not None:
                await engine.close()
        finally:
            if handle is not None:
                await handle.close()
            if self._client is not None:
                await self._client.close()
            if isinstance(self._effects.tools, ToolRegistry):
                await self._effects.tools.close()

    @property
    def engine(self) -> WorkflowEngine:
        if self._engine is None:
            raise RuntimeError("WorkflowService.start() has not been called")
        return self._engine

    @property
    def store(self) -> WorkflowStore:
        if self._handle is None:
            raise RuntimeError("WorkflowService.start() has not been called")
        return self._handle.workflows

    # ------------------------------------------------------------------ triggers

    async def start_run(
        self,
        tenant: str,
        workflow: str,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        trigger: str = "api",
    ) -> WorkflowRun:
        """Store a queued run of the workflow's current version and wake the engine. Raises
        ``NotFound`` (no such workflow) or ``InvalidRequest`` (input missing)."""
        definition = self.catalog.get(workflow).definition
        checked = check_input(definition, input)
        run_id = (
            derived_run_id(tenant, workflow, idempotency_key)
            if idempotency_key is not None
            else new_id("wfr")
        )
        run, _ = await self.store.create_run(
            tenant,
            run_id=run_id,
            workflow=workflow,
            version=definition.version,
            definition=definition.source,
            input=checked,
            trigger=trigger,
        )
        self.engine.wake(tenant)
        return run

    async def start_from_channel(
        self, tenant: str, workflow: str, input: Mapping[str, Any], *, message_id: str
    ) -> WorkflowRun:
        """For channel bindings: ``message_id`` (the channel's own id of the inbound message)
        makes a redelivered message start nothing new."""
        return await self.start_run(
            tenant,
            workflow,
            dict(input),
            idempotency_key=f"channel:{message_id}",
            trigger="channel",
        )

    async def start_from_webhook(
        self,
        tenant: str,
        workflow: str,
        body: bytes,
        *,
        signature: str | None,
        delivery_id: str | None = None,
    ) -> WorkflowRun:
        """An inbound webhook: the body must carry ``x-wayport-signature: sha256=<hmac>`` made
        with the workflow's ``webhook_secret``; its JSON object is the run's input."""
        spec = self.catalog.get(workflow)
        if spec.webhook_secret is None:
            raise NotFound(
                f"The workflow {workflow!r} takes no webhooks", code="workflow_not_found"
            )
        expected = sign(spec.webhook_secret, body)
        if signature is None or not hmac.compare_digest(expected, signature):
            raise AuthError("the webhook signature does not match", code="invalid_signature")
        try:
            data = msgspec.json.decode(body) if body else {}
        except msgspec.DecodeError as exc:
            raise InvalidRequest(f"the webhook body is not JSON: {exc}") from exc
        key = delivery_id or hashlib.sha256(body).hexdigest()
        return await self.start_run(
            tenant, workflow, data, idempotency_key=f"webhook:{key}", trigger="webhook"
        )

    async def _cron_loop(self) -> None:
        now = self._wall()
        due = {
            (spec.definition.name, i): cron.next_after_ts(now)
            for spec in self.catalog.list()
            for i, cron in enumerate(spec.cron)
        }
        while due:
            (name, i), at = min(due.items(), key=lambda kv: kv[1])
            wait = at - self._wall()
            if wait > 0:
                await self._sleep(wait)
                continue  # re-check: the clock may have moved further than asked
            spec = self.catalog.get(name)
            cron = spec.cron[i]
            fired = datetime.fromtimestamp(at, UTC).isoformat()
            try:
                await self.start_run(
                    spec.tenant,
                    name,
                    {"scheduled_at": fired} if "scheduled_at" in spec.definition.inputs else {},
                    idempotency_key=f"cron:{cron.expression}:{int(at)}",
                    trigger="cron",
                )
                self.cron_fired.append((name, at))
            except WayportError as exc:
                _log.warning("cron trigger failed", workflow=name, error=exc.message)
            due[(name, i)] = cron.next_after_ts(max(at, self._wall()))

    # ------------------------------------------------------------------ reading

    async def run(self, tenant: str, run_id: str) -> WorkflowRun:
        found = await self.store.get(tenant, run_id)
        if found is None:
            raise NotFound(
                f"The workflow run {run_id!r} does not exist", code="workflow_run_not_found"
            )
        return found

    async def progress(self, tenant: str, run_id: str) -> tuple[WorkflowRun, list[StepRow]]:
        run = await self.run(tenant, run_id)
        return run, await self.store.steps(tenant, run_id)

    async def runs(
        self,
        tenant: str,
        *,
        workflow: str | None = None,
        status: WorkflowStatus | None = None,
        limit: int = 50,
    ) -> list[WorkflowRun]:
        return await self.store.list_runs(tenant, workflow=workflow, status=status, limit=limit)

    # ------------------------------------------------------------------ approvals, cancel

    async def approve(
        self,
        tenant: str,
        run_id: str,
        *,
        approved: bool = True,
        step: str | None = None,
        comment: str | None = None,
        by: str | None = None,
    ) -> WorkflowRun:
        """Settle a waiting approval: approved, the step completes with ``{"approved": true,
        "by", "comment"}``; rejected, it fails and so does the run. ``step`` may be left out
        when one approval is waiting. ``Conflict`` when none is."""
        _, steps = await self.progress(tenant, run_id)
        waiting = [
            s for s in steps if s.kind == StepKind.APPROVAL.value and s.status is StepStatus.WAITING
        ]
        if step is not None:
            waiting = [s for s in waiting if s.path == step]
        if not waiting:
            raise Conflict(f"workflow run {run_id} has no approval waiting", code="no_approval")
        if len(waiting) > 1:
            names = ", ".join(s.path for s in waiting)
            raise InvalidRequest(f"several approvals wait ({names}); name one as step")
        target = waiting[0].path
        output = {"approved": approved, "by": by, "comment": comment}
        reason = f"rejected by {by or 'a reviewer'}" + (f": {comment}" if comment else "")
        woken = await self.store.resolve_step(
            tenant,
            run_id,
            target,
            status=StepStatus.COMPLETED if approved else StepStatus.FAILED,
            output=output,
            error=None if approved else reason,
        )
        self.engine.nudge(tenant, run_id)
        return woken

    async def cancel(self, tenant: str, run_id: str) -> WorkflowRun:
        """Stop a run: its engine gives up at the next checkpoint, which is refused."""
        run = await self.run(tenant, run_id)
        if run.status.finished:
            return run
        try:
            return await self.store.finish(tenant, run_id, WorkflowStatus.CANCELLED, worker=None)
        except Conflict:
            return await self.run(tenant, run_id)

    # ------------------------------------------------------------------ completion webhooks

    async def _completed(self, run: WorkflowRun) -> None:
        spec = self.catalog.current(run.workflow)
        hook = self.catalog.get(run.workflow).on_complete if spec is not None else None
        if hook is None or self._client is None:
            return
        body = msgspec.json.encode({"type": "workflow.run.finished", "data": run.to_json()})
        headers = {"content-type": "application/json"}
        if hook.secret:
            headers[SIGNATURE_HEADER] = sign(hook.secret, body)
        for attempt in range(3):
            try:
                response = await self._client.request(
                    "POST", hook.url, body=body, headers=headers, timeout=10.0
                )
            except WayportError as exc:
                _log.warning("completion webhook failed", run_id=run.id, error=exc.message)
            else:
                if response.status < 500:
                    return
            await asyncio.sleep(0.5 * 2**attempt)
