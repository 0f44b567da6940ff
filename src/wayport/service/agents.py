"""The agent use cases: the catalog of agents, sessions, and runs submitted, awaited,
followed and cancelled. No HTTP in here; ``wayport.server.agents_api`` translates.

    service = AgentService(catalog=AgentCatalog([assistant]), model=gateway,
                           open_stores=lambda: open_store(None, state_dir=state_dir),
                           tools=ToolRegistry.from_specs(entries),      # started and closed here
                           context=lambda sessions: ContextEngine(store=sessions, …))
    await service.start()                                   # resumes unfinished runs
    session = await service.create_session("assistant")
    run = await service.submit(session.id, [{"role": "user", "content": "hi"}])
    finished = await service.finished(run.id)               # RunFinished: run + usage
    await service.close()                                   # drains the worker

``submit`` returns once the run (holding the inbound message) is stored: the acknowledgement
a client gets means the message survives a crash. Which run may start when is the session
lane's business (the agent's queue mode); executing is the worker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Protocol

from wayport.core.agent import AgentSpec, RunEvent, RunFinished, SessionScope
from wayport.core.errors import Conflict, InvalidRequest, NotFound, WayportError
from wayport.core.ids import new_id
from wayport.core.session import DEFAULT_TENANT, Json, Run, RunStatus, Session, StoredMessage
from wayport.core.types import ChatRequest, Completion, Message
from wayport.ports import RunObserver, RunStore, SessionStore, VersionPicker
from wayport.runtime.context import ContextEngine, Counters, summarisers
from wayport.runtime.events import RunChannel, RunEvents
from wayport.runtime.lanes import Lanes
from wayport.runtime.runner import ChatModel, ContextWindow, Runner, Tools, run_input, usage_of
from wayport.runtime.tools import ToolRegistry
from wayport.runtime.versions import AgentVersions
from wayport.runtime.worker import RunWatcher, Worker, lane_key
from wayport.service import approvals
from wayport.service.agent_defs import AgentDefinitions
from wayport.service.cluster import CANCEL_TOPIC, Cluster
from wayport.service.webhooks import WebhookDispatcher, WebhookTarget

AGENT_PREFIX = "agent/"


class Stores(Protocol):
    """The stores the service runs on (``wayport.store.SqlStore`` and ``MemoryStores`` fit)."""

    @property
    def sessions(self) -> SessionStore: ...

    @property
    def runs(self) -> RunStore: ...

    async def close(self) -> None: ...


class AgentCatalog:
    """The configured agents by name, plus every version seen since start, so a run keeps the
    definition it started with after the agent is edited (after a restart an unknown version
    falls back to the current one)."""

    def __init__(self, agents: Iterable[AgentSpec]) -> None:
        self._agents: dict[str, AgentSpec] = {}
        self._versions: dict[tuple[str, str], AgentSpec] = {}
        #: agent admin API: each tenant's own agents (``service.agent_defs`` fills them)
        self._tenant_agents: dict[str, dict[str, AgentSpec]] = {}
        for agent in agents:
            self.put(agent)

    def put(self, agent: AgentSpec) -> None:
        self._agents[agent.name] = agent
        self._versions[(agent.name, agent.version)] = agent

    def list(self, tenant: str | None = None) -> list[AgentSpec]:
        """The configured agents, then ``tenant``'s own (admin API)."""
        own = self._tenant_agents.get(tenant, {}) if tenant is not None else {}
        return [*self._agents.values(), *own.values()]

    def configured(self, name: str) -> AgentSpec | None:
        """The agent of ``wayport.yaml`` named ``name``, if any."""
        return self._agents.get(name)

    def set_tenant(self, tenant: str, agents: Mapping[str, AgentSpec]) -> None:
        """Replace ``tenant``'s own agents (never shadowing a configured one)."""
        self._tenant_agents[tenant] = {n: a for n, a in agents.items() if n not in self._agents}

    def get(self, name: str, tenant: str | None = None) -> AgentSpec:
        found = self._agents.get(name)
        if found is None and tenant is not None:
            found = self._tenant_agents.get(tenant, {}).get(name)
        if found is None:
            raise NotFound(
                f"The agent {name!r} does not exist", param="agent", code="agent_not_found"
            )
        return found

    def versions(self, name: str) -> tuple[str, ...]:
        """Every version of ``name`` seen since start, oldest first."""
        return tuple(version for (agent, version) in self._versions if agent == name)

    def pinned(self, name: str, version: str, tenant: str | None = None) -> AgentSpec:
        return self._versions.get((name, version)) or self.get(name, tenant)


class AgentService:
    def __init__(
        self,
        *,
        catalog: AgentCatalog,
        model: ChatModel,
        open_stores: Callable[[], Awaitable[Stores]],
        tools: Tools | None = None,
        context: Callable[[SessionStore], ContextWindow] | None = None,
        ping: Callable[[Stores], Awaitable[None]] | None = None,
        ping_interval: float = 5.0,
        tenant: str = DEFAULT_TENANT,
        concurrency: int = 64,
        drain_timeout: float = 10.0,
        observer: RunObserver | None = None,
        webhooks: WebhookDispatcher | None = None,
        tenants: Callable[[], Awaitable[Iterable[str]]] | None = None,
        watch: RunWatcher | None = None,
        cluster: Cluster | None = None,
    ) -> None:
        """``tools``: the registry (default: none); when it has ``start``/``close`` (the real
        ``ToolRegistry``) the service starts and closes it with itself. ``context``: builds
        the context engine on the opened session store (default: a ``ContextEngine`` that
        estimates tokens and summarises through ``model``). ``ping`` checks the stores every
        ``ping_interval`` seconds while started; ``store_ok`` holds the last answer, for
        readiness probes that must not wait on I/O."""
        self.catalog = catalog
        self._model = model
        self._open_stores = open_stores
        self._tools: Tools = tools if tools is not None else ToolRegistry()
        self._context = context if context is not None else self._default_context
        self._ping = ping
        self._ping_interval = ping_interval
        self._pinger: asyncio.Task[None] | None = None
        self.store_ok = False  #: the last store check (or start) succeeded
        self._tenant = tenant
        # the tenants whose runs the worker claims: those known at start, and every tenant
        # that submits a run afterwards (``tenants`` lists them from the tenant registry)
        self.list_tenants = tenants
        self._tenants: set[str] = {tenant}
        self.watch = watch  #: the audit trail's sink per run attempt (set before start)
        #: awaited on close after the last run has drained, while the stores are still open
        #: (the audit trail of a run that finished during the drain is written then)
        self.on_drained: list[Callable[[], Awaitable[None]]] = []
        self._concurrency = concurrency
        self._drain = drain_timeout
        self.observer = observer  #: run metrics and spans (``wayport.telemetry.runs``)
        self.picker: VersionPicker | None = None  #: releases: the version a new run uses
        self.webhooks = webhooks  #: completion webhooks; started and closed with the service
        self.lanes = Lanes()
        # scale-out: replicas on one database (docs/scaling.md); None: a single node
        self.cluster = cluster
        self._bus = cluster.bus if cluster is not None else None
        self.events = RunEvents(bus=self._bus)
        if self._bus is not None:
            self._bus.subscribe(CANCEL_TOPIC, self._cancel_here)
        if cluster is not None:  # scale-out: runs queued on other replicas wake this worker
            cluster.on_queued(self._wake_here)
        self._stores: Stores | None = None
        self._worker: Worker | None = None
        self._versions: AgentVersions | None = None  #: pinned agent definitions
        #: agent admin API: tenants' own agents, stored (set before start; None: config only)
        self.definitions: AgentDefinitions | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the tools, open the stores and start the worker, which resumes unfinished
        runs."""
        if isinstance(self._tools, ToolRegistry):
            await self._tools.start()
        try:
            stores = await self._open_stores()
        except BaseException:
            await self._close_tools()
            raise
        if self.list_tenants is not None:
            self._stores = stores  # the tenant registry lives in the same database
            try:
                self._tenants.update(await self.list_tenants())
            except BaseException:
                self._stores = None
                await stores.close()
                await self._close_tools()
                raise
        runner = Runner(
            model=self._model,
            sessions=stores.sessions,
            runs=stores.runs,
            tools=self._tools,
            context=self._context(stores.sessions),
            observer=self.observer,
            failover=self._failover if self.picker is not None else None,  # releases
        )
        worker = Worker(
            runs=stores.runs,
            runner=runner,
            resolve=self._agent_of,
            lanes=self.lanes,
            events=self.events,
            tenant=self._tenant,
            tenants=lambda: self._tenants,
            watch=self.watch,
            concurrency=self._concurrency,
            # scale-out: claim, heartbeat and sweep; never take over other replicas' runs
            takeover=self.cluster is None,
            shared=self.cluster is not None,
            heartbeat_every=self.cluster.heartbeat_every if self.cluster else 10.0,
            stale_after=self.cluster.stale_after if self.cluster else 60.0,
            poll_every=self.cluster.poll_every if self.cluster else 1.0,
        )
        self._stores, self._worker = stores, worker
        self._versions = AgentVersions(stores.runs)
        if self.definitions is not None:  # agent admin API
            self.definitions.attach(stores, self.catalog, pin=self._versions.pin, bus=self._bus)
        if self._bus is not None:
            await self._bus.start()
        await worker.start()
        if self.webhooks is not None:
            await self.webhooks.start(stores, stores.runs, tenants=lambda: list(self._tenants))
        self.store_ok = True
        if self._ping is not None:
            self._pinger = asyncio.create_task(self._keep_pinging(), name="wayport-store-ping")

    async def close(self) -> None:
        """Drain the worker (runs left over go back to the queue), let ``on_drained`` finish
        what the drained runs started, then close the stores."""
        worker, stores = self._worker, self._stores
        self._worker = None
        self.store_ok = False
        pinger, self._pinger = self._pinger, None
        if pinger is not None:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
        try:
            if worker is not None:
                await worker.close(grace=self._drain)
                if self.cluster is not None:  # scale-out: runs handed back run elsewhere now
                    await self.cluster.announce()
            for hook in self.on_drained:
                await hook()
        finally:
            self._stores = None
            try:
                if self.webhooks is not None:
                    await self.webhooks.close()  # undelivered ones wait in the outbox
                if stores is not None:
                    await stores.close()
            finally:
                try:
                    await self._close_tools()
                finally:
                    if self.cluster is not None:  # scale-out: after the drain's last events
                        if self._bus is not None:
                            self.events.close()
                        await self.cluster.close()  # the bus and the Redis limiter

    async def check_store(self) -> bool:
        """Ping the stores and remember the answer in ``store_ok`` (which readiness reads
        without I/O); a service not started is not ok."""
        stores = self._stores
        if stores is None or self._ping is None:
            self.store_ok = stores is not None
            return self.store_ok
        try:
            await self._ping(stores)
        except WayportError:
            self.store_ok = False
        else:
            self.store_ok = True
        return self.store_ok

    async def _keep_pinging(self) -> None:
        while True:
            await asyncio.sleep(self._ping_interval)
            await self.check_store()

    async def _close_tools(self) -> None:
        if isinstance(self._tools, ToolRegistry):
            await self._tools.close()

    def _default_context(self, sessions: SessionStore) -> ContextEngine:
        return ContextEngine(
            store=sessions,
            counter_for=Counters(),
            summariser_for=summarisers(_completer(self._model)),
        )

    @property
    def worker(self) -> Worker:
        if self._worker is None:
            raise RuntimeError("AgentService.start() has not been called")
        return self._worker

    @property
    def versions(self) -> AgentVersions:
        if self._versions is None:
            raise RuntimeError("AgentService.start() has not been called")
        return self._versions

    @property
    def stores(self) -> Stores:
        if self._stores is None:
            raise RuntimeError("AgentService.start() has not been called")
        return self._stores

    # ------------------------------------------------------------------ sessions

    async def create_session(
        self,
        agent: str,
        *,
        metadata: Mapping[str, Json] | None = None,
        session_id: str | None = None,
        tenant: str = DEFAULT_TENANT,
        preview: str | None = None,
        sticky_key: str | None = None,
    ) -> Session:
        """``preview``, ``sticky_key``: releases (the version asked for with the preview
        header; the key a rollout splits by, default the session id)."""
        await self._own_agents(tenant)
        spec = self.catalog.get(agent, tenant)
        if self.picker is not None:  # releases: the version the session starts on
            session_id = session_id or new_id("sess")
            key = sticky_key or session_id
            spec = (await self.picker.pick(tenant, spec, key=key, preview=preview)).spec
            await self.versions.pin(tenant, spec)
        return await self.stores.sessions.create(
            tenant,
            agent=spec.name,
            agent_version=spec.version,
            metadata=metadata,
            session_id=session_id,
        )

    async def session(self, session_id: str, *, tenant: str = DEFAULT_TENANT) -> Session:
        found = await self.stores.sessions.get(tenant, session_id)
        if found is None:
            raise _no_session(session_id)
        return found

    async def history(
        self, session_id: str, *, after: int = 0, limit: int = 100, tenant: str = DEFAULT_TENANT
    ) -> list[StoredMessage]:
        try:
            return await self.stores.sessions.history(tenant, session_id, after=after, limit=limit)
        except NotFound as exc:
            raise _no_session(session_id) from exc

    async def delete_session(self, session_id: str, *, tenant: str = DEFAULT_TENANT) -> None:
        lane = lane_key(tenant, session_id)
        for run_id in self.lanes.pending(lane):
            if not self.worker.cancel(run_id):
                self.lanes.release(lane, run_id)  # a paused run's hold goes with the session
        try:
            await self.stores.sessions.delete(tenant, session_id)
        except NotFound as exc:
            raise _no_session(session_id) from exc

    # ------------------------------------------------------------------ runs

    async def submit(
        self,
        session_id: str,
        messages: list[Message],
        *,
        idempotency_key: str | None = None,
        webhook: WebhookTarget | None = None,
        tenant: str = DEFAULT_TENANT,
        preview: str | None = None,
        sticky_key: str | None = None,  # releases: a stateless call's user
    ) -> Run:
        """Store a run that adds ``messages`` to the session and answers them; return it
        ``QUEUED`` (``RUNNING`` when it started here at once). A retried submit with the same
        ``idempotency_key`` returns the first run.
        Raises ``NotFound``, ``Conflict`` (the agent rejects a second run), ``RateLimited``
        (the session's queue is full). ``webhook``: where to POST the run's signed
        completion event (armed before this returns)."""
        if not messages:
            raise InvalidRequest("input: at least one message is needed", param="input")
        if webhook is not None:
            self._webhooks().check(webhook)
        session = await self.session(session_id, tenant=tenant)
        await self._own_agents(tenant)
        agent = self.catalog.get(session.agent, tenant)
        picked = None
        if self.picker is not None:  # releases: sticky per session, mirrored for shadow
            pinned = session.agent_version or None
            picked = await self.picker.pick(
                tenant, agent, key=sticky_key or session_id, pinned=pinned, preview=preview
            )
            agent = picked.spec
        run_id = new_id("run")
        if idempotency_key is not None:
            # other tenants' ids are other runs (the default tenant keeps its earlier ids)
            scoped = session_id if tenant == DEFAULT_TENANT else f"{tenant}\0{session_id}"
            digest = hashlib.sha256(f"{scoped}\0{idempotency_key}".encode()).hexdigest()
            run_id = f"run-{digest[:24]}"
            earlier = await self.stores.runs.get(tenant, run_id)
            if earlier is not None:
                if webhook is not None:  # the first attempt may have died before arming
                    await self._webhooks().arm(tenant, earlier.id, webhook)
                return earlier
        lane = lane_key(tenant, session_id)
        interrupted = self.lanes.admit(
            lane, run_id, mode=agent.queue_mode, max_queue=agent.max_queue
        )
        version = await self.versions.pin(tenant, agent)  # a resumed run runs this version
        gated = self.cluster is not None and self.cluster.pending is not None
        if gated and self.cluster is not None:
            try:  # scale-out: the session's runs queued on every replica count too
                interrupted = await self.cluster.admit(
                    self.stores,
                    tenant,
                    session_id,
                    run_id,
                    lane=lane,
                    mode=agent.queue_mode,
                    max_queue=agent.max_queue,
                )
            except BaseException:
                self.lanes.release(lane, run_id)
                raise
        # an idle session's run starts here at once, created claimed: no queue, no claim
        taken = self.worker.take(tenant, session_id, run_id) if webhook is None else None
        self.events.open(run_id)
        try:
            run = await self.stores.runs.create(
                tenant,
                session_id=session_id,
                input=run_input(messages),
                agent_version=version,
                run_id=run_id,
                worker=taken,
            )
        except BaseException:
            self.lanes.release(lane, run_id)
            self.events.discard(run_id)
            raise
        finally:
            if gated and self.cluster is not None:
                self.cluster.admitted(lane)  # scale-out: the next admission counts this run
        if webhook is not None:
            await self._webhooks().arm(tenant, run.id, webhook)
        for earlier_id in interrupted:
            await self._stop(earlier_id, session_id, tenant=tenant)
        self._tenants.add(tenant)
        if taken is not None and run.status is RunStatus.RUNNING:
            self.worker.adopt(run, agent)
        else:  # scale-out: created queued all the same when the session is busy elsewhere
            self.worker.wake()
            if self.cluster is not None:
                self.cluster.announce_queued()  # scale-out: a replica with room claims it
        if picked is not None and picked.shadow is not None and self.picker is not None:
            self.picker.mirror(tenant, run, messages, picked.shadow)  # releases
        return run

    def _webhooks(self) -> WebhookDispatcher:
        if self.webhooks is None:
            raise InvalidRequest("webhooks are not enabled on this server", param="webhook")
        return self.webhooks

    async def approve(
        self,
        run_id: str,
        *,
        approve: bool,
        reason: str | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> Run:
        """Decide the tool calls a ``requires_approval`` run waits on and queue it again."""
        run = await approvals.approve(
            self.stores.runs, tenant, run_id, approve=approve, reason=reason
        )
        self.worker.wake()
        return run

    async def run(self, run_id: str, *, tenant: str = DEFAULT_TENANT) -> Run:
        found = await self.stores.runs.get(tenant, run_id)
        if found is None:
            raise NotFound(f"The run {run_id!r} does not exist", code="run_not_found")
        return found

    async def finished(self, run_id: str, *, tenant: str = DEFAULT_TENANT) -> RunFinished:
        """Wait for the run to finish; its last event."""
        channel = self.events.get(run_id)
        if channel is not None:
            if self.worker.tenant_of(run_id) != tenant:  # held here: its tenant is known
                await self.run(run_id, tenant=tenant)  # another tenant's run is not found
            return await channel.wait()
        run, channel = await self._subscribed(run_id, tenant)
        if run.status.finished or run.status.waiting:
            final = channel.finished or await self._final(run)
            self._unsubscribe(run_id, channel, final)
            return final
        return await channel.wait()

    async def follow(self, run_id: str, *, tenant: str = DEFAULT_TENANT) -> AsyncIterator[RunEvent]:
        """The run's events from its start, then live, to ``RunFinished``; a finished run
        yields just its ``RunFinished``. Raises ``NotFound`` before yielding."""
        channel = self.events.get(run_id)
        if channel is not None:
            await self.run(run_id, tenant=tenant)  # another tenant's run is not found
        else:
            run, channel = await self._subscribed(run_id, tenant)
            if run.status.finished or run.status.waiting:
                final = channel.finished or await self._final(run)
                self._unsubscribe(run_id, channel, final)
                return _single(final)
        return channel.follow()

    async def _subscribed(self, run_id: str, tenant: str) -> tuple[Run, RunChannel]:
        """The run and its event channel, subscribed *before* the status is read: a run that
        finishes in between has its ``RunFinished`` land in the channel instead of in one
        nobody follows (which left the caller waiting forever)."""
        await self.run(run_id, tenant=tenant)  # another tenant's run: NotFound, no channel
        channel = self.events.open(run_id)
        try:
            return await self.run(run_id, tenant=tenant), channel
        except BaseException:
            if self.events.get(run_id) is channel and not channel.events:
                self.events.discard(run_id)  # deleted meanwhile
            raise

    def _unsubscribe(self, run_id: str, channel: RunChannel, final: RunFinished) -> None:
        """Drop a channel opened to wait on a run that turned out finished or paused; anyone
        else waiting on it hears ``final`` rather than nothing."""
        channel.emit(final)  # a no-op when the run's own finish got there first
        if self.events.get(run_id) is channel:
            self.events.discard(run_id)

    async def cancel(self, run_id: str, *, tenant: str = DEFAULT_TENANT) -> Run:
        """Cancel a queued run now, a running one at its next safe point; a finished run is
        returned as it is."""
        run = await self.run(run_id, tenant=tenant)
        if run.status.finished:
            return run
        if run.status is RunStatus.REQUIRES_APPROVAL:
            queued = await approvals.cancel_paused(self.stores.runs, tenant, run)
            self.worker.wake()
            return queued
        return await self._stop(run_id, run.session_id, tenant=tenant) or await self.run(
            run_id, tenant=tenant
        )

    async def _stop(self, run_id: str, session_id: str, *, tenant: str) -> Run | None:
        if self.worker.cancel(run_id):
            return None
        try:
            run = await self.stores.runs.transition(
                tenant, run_id, RunStatus.CANCELLED, expected=(RunStatus.QUEUED,)
            )
        except Conflict:
            if self.lanes.held(lane_key(tenant, session_id)) == run_id:
                # paused for approval (interrupted): its pending calls are answered "not
                # executed" on its way to cancelled, and the session's next run waits for it
                paused = await self.run(run_id, tenant=tenant)
                if paused.status is RunStatus.REQUIRES_APPROVAL:
                    with contextlib.suppress(Conflict):  # decided meanwhile: it runs on
                        await approvals.cancel_paused(self.stores.runs, tenant, paused)
                    self.worker.wake()
                    return None
            self.worker.cancel(run_id)  # claimed meanwhile: it stops at its first safe point
            if self._bus is not None:  # scale-out: or claimed by another replica
                await self._bus.publish(CANCEL_TOPIC, run_id)
            return None
        self.lanes.release(lane_key(tenant, session_id), run_id)
        self.events.emit(run_id, RunFinished(run=run))
        return run

    def _wake_here(self) -> None:
        if self._worker is not None:
            self._worker.wake()

    def _cancel_here(self, run_id: str) -> None:
        """A cancellation published by any replica: stop the run if this one holds it."""
        if self._worker is not None:
            self._worker.cancel(run_id)

    # ------------------------------------------------------------------ chat completions

    async def chat(
        self,
        model: str,
        messages: list[Message],
        *,
        session_id: str | None,
        tenant: str = DEFAULT_TENANT,
        preview: str | None = None,
        user: str | None = None,
    ) -> RunFinished:
        """``"model": "agent/<name>"`` on chat completions, answered whole. ``preview``,
        ``user``: releases (the preview header; a stateless call's sticky key)."""
        session, stateless = await self._chat_session(model, session_id, tenant, preview, user)
        try:
            run = await self.submit(
                session.id,
                _turn(messages, stateless),
                tenant=tenant,
                preview=preview,
                sticky_key=user if stateless else None,  # releases: the user, not the session
            )
            return await self.finished(run.id, tenant=tenant)
        finally:
            if stateless:
                await self.stores.sessions.delete(tenant, session.id)

    async def chat_stream(
        self,
        model: str,
        messages: list[Message],
        *,
        session_id: str | None,
        tenant: str = DEFAULT_TENANT,
        preview: str | None = None,
        user: str | None = None,
    ) -> AsyncGenerator[RunEvent, None]:
        """The same, as run events. Errors before the run is stored are raised from the first
        ``__anext__``."""
        session, stateless = await self._chat_session(model, session_id, tenant, preview, user)
        try:
            run = await self.submit(
                session.id,
                _turn(messages, stateless),
                tenant=tenant,
                preview=preview,
                sticky_key=user if stateless else None,  # releases: the user, not the session
            )
            async for event in await self.follow(run.id, tenant=tenant):
                yield event
        finally:
            if stateless:
                await self.stores.sessions.delete(tenant, session.id)

    async def _chat_session(
        self,
        model: str,
        session_id: str | None,
        tenant: str,
        preview: str | None = None,
        user: str | None = None,
    ) -> tuple[Session, bool]:
        await self._own_agents(tenant)
        agent = self.catalog.get(model.removeprefix(AGENT_PREFIX), tenant)
        if session_id is None or agent.scope is SessionScope.STATELESS:
            # a session of its own, deleted after the answer: one path for every run
            made = await self.create_session(
                agent.name,
                metadata={"stateless": True},
                tenant=tenant,
                preview=preview,
                sticky_key=user or new_id("key"),
            )
            return made, True
        found = await self.stores.sessions.get(tenant, session_id)
        if found is None:
            return await self.create_session(
                agent.name, session_id=session_id, tenant=tenant, preview=preview
            ), False
        if found.agent != agent.name:
            raise Conflict(
                f"session {session_id} belongs to agent {found.agent!r}", code="session_agent"
            )
        return found, False

    # ------------------------------------------------------------------ helpers

    async def _failover(self, run: Run, agent: AgentSpec) -> AgentSpec | None:
        """releases: the stable version to retry a failed candidate run on."""
        return None if self.picker is None else await self.picker.fallback(run, agent)

    async def _agent_of(self, run: Run) -> AgentSpec:
        session = await self.session(run.session_id, tenant=run.tenant_id)
        # the version the run started with, even after an edit or a restart
        pinned = await self.versions.get(run.tenant_id, session.agent, run.agent_version)
        if pinned is None:
            await self._own_agents(run.tenant_id)
        return pinned or self.catalog.pinned(session.agent, run.agent_version, run.tenant_id)

    async def _own_agents(self, tenant: str) -> None:
        """agent admin API: the tenant's own agents into the catalog (a cached read)."""
        if self.definitions is not None:
            await self.definitions.refresh(tenant)

    async def _final(self, run: Run) -> RunFinished:
        return RunFinished(
            run=run, usage=usage_of(await self.stores.runs.steps(run.tenant_id, run.id))
        )


def _turn(messages: list[Message], stateless: bool) -> list[Message]:
    """What a chat-completions call adds to the session: everything but system messages when
    the session is its own, else only the new turn (after the last assistant message): the
    server already holds the rest."""
    kept = [m for m in messages if m["role"] not in ("system", "developer")]
    if stateless:
        return kept
    last = max((i for i, m in enumerate(kept) if m["role"] == "assistant"), default=-1)
    return kept[last + 1 :]


def _completer(model: ChatModel) -> Callable[[ChatRequest], Awaitable[Completion]]:
    """A whole answer from a model that streams (for the summariser)."""

    async def complete(request: ChatRequest) -> Completion:
        parts = [c.content async for c in model.stream(request) if c.content]
        return Completion(content="".join(parts) or None)

    return complete


async def _single(event: RunFinished) -> AsyncIterator[RunEvent]:
    yield event


def _no_session(session_id: str) -> NotFound:
    return NotFound(f"The session {session_id!r} does not exist", code="session_not_found")
