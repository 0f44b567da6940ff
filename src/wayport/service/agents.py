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
from wayport.ports import RunStore, SessionStore
from wayport.runtime.context import ContextEngine, Counters, summarisers
from wayport.runtime.events import RunEvents
from wayport.runtime.lanes import Lanes
from wayport.runtime.runner import ChatModel, ContextWindow, Runner, Tools, run_input, usage_of
from wayport.runtime.tools import ToolRegistry
from wayport.runtime.worker import Worker

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
        for agent in agents:
            self.put(agent)

    def put(self, agent: AgentSpec) -> None:
        self._agents[agent.name] = agent
        self._versions[(agent.name, agent.version)] = agent

    def list(self) -> list[AgentSpec]:
        return list(self._agents.values())

    def get(self, name: str) -> AgentSpec:
        found = self._agents.get(name)
        if found is None:
            raise NotFound(
                f"The agent {name!r} does not exist", param="agent", code="agent_not_found"
            )
        return found

    def pinned(self, name: str, version: str) -> AgentSpec:
        return self._versions.get((name, version)) or self.get(name)


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
        self._concurrency = concurrency
        self._drain = drain_timeout
        self.lanes = Lanes()
        self.events = RunEvents()
        self._stores: Stores | None = None
        self._worker: Worker | None = None

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
        runner = Runner(
            model=self._model,
            sessions=stores.sessions,
            runs=stores.runs,
            tools=self._tools,
            context=self._context(stores.sessions),
        )
        worker = Worker(
            runs=stores.runs,
            runner=runner,
            resolve=self._agent_of,
            lanes=self.lanes,
            events=self.events,
            tenant=self._tenant,
            concurrency=self._concurrency,
        )
        self._stores, self._worker = stores, worker
        await worker.start()
        self.store_ok = True
        if self._ping is not None:
            self._pinger = asyncio.create_task(self._keep_pinging(), name="wayport-store-ping")

    async def close(self) -> None:
        """Drain the worker (runs left over go back to the queue), then close the stores."""
        worker, stores = self._worker, self._stores
        self._worker = self._stores = None
        self.store_ok = False
        pinger, self._pinger = self._pinger, None
        if pinger is not None:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
        try:
            if worker is not None:
                await worker.close(grace=self._drain)
        finally:
            try:
                if stores is not None:
                    await stores.close()
            finally:
                await self._close_tools()

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
    ) -> Session:
        spec = self.catalog.get(agent)
        return await self.stores.sessions.create(
            self._tenant,
            agent=spec.name,
            agent_version=spec.version,
            metadata=metadata,
            session_id=session_id,
        )

    async def session(self, session_id: str) -> Session:
        found = await self.stores.sessions.get(self._tenant, session_id)
        if found is None:
            raise _no_session(session_id)
        return found

    async def history(
        self, session_id: str, *, after: int = 0, limit: int = 100
    ) -> list[StoredMessage]:
        try:
            return await self.stores.sessions.history(
                self._tenant, session_id, after=after, limit=limit
            )
        except NotFound as exc:
            raise _no_session(session_id) from exc

    async def delete_session(self, session_id: str) -> None:
        for run_id in self.lanes.pending(session_id):
            self.worker.cancel(run_id)
        try:
            await self.stores.sessions.delete(self._tenant, session_id)
        except NotFound as exc:
            raise _no_session(session_id) from exc

    # ------------------------------------------------------------------ runs

    async def submit(
        self,
        session_id: str,
        messages: list[Message],
        *,
        idempotency_key: str | None = None,
    ) -> Run:
        """Store a run that adds ``messages`` to the session and answers them; return it
        ``QUEUED``. A retried submit with the same ``idempotency_key`` returns the first run.
        Raises ``NotFound``, ``Conflict`` (the agent rejects a second run), ``RateLimited``
        (the session's queue is full)."""
        if not messages:
            raise InvalidRequest("input: at least one message is needed", param="input")
        session = await self.session(session_id)
        agent = self.catalog.get(session.agent)
        run_id = new_id("run")
        if idempotency_key is not None:
            digest = hashlib.sha256(f"{session_id}\0{idempotency_key}".encode()).hexdigest()
            run_id = f"run-{digest[:24]}"
            earlier = await self.stores.runs.get(self._tenant, run_id)
            if earlier is not None:
                return earlier
        interrupted = self.lanes.admit(
            session_id, run_id, mode=agent.queue_mode, max_queue=agent.max_queue
        )
        self.events.open(run_id)
        try:
            run = await self.stores.runs.create(
                self._tenant,
                session_id=session_id,
                input=run_input(messages),
                agent_version=agent.version,
                run_id=run_id,
            )
        except BaseException:
            self.lanes.release(session_id, run_id)
            self.events.discard(run_id)
            raise
        for earlier_id in interrupted:
            await self._stop(earlier_id, session_id)
        self.worker.wake()
        return run

    async def run(self, run_id: str) -> Run:
        found = await self.stores.runs.get(self._tenant, run_id)
        if found is None:
            raise NotFound(f"The run {run_id!r} does not exist", code="run_not_found")
        return found

    async def finished(self, run_id: str) -> RunFinished:
        """Wait for the run to finish; its last event."""
        channel = self.events.get(run_id)
        if channel is not None:
            return await channel.wait()
        run = await self.run(run_id)
        if run.status.finished:
            return await self._final(run)
        return await self.events.open(run_id).wait()

    async def follow(self, run_id: str) -> AsyncIterator[RunEvent]:
        """The run's events from its start, then live, to ``RunFinished``; a finished run
        yields just its ``RunFinished``. Raises ``NotFound`` before yielding."""
        channel = self.events.get(run_id)
        if channel is None:
            run = await self.run(run_id)
            if run.status.finished:
                return _single(await self._final(run))
            channel = self.events.open(run_id)
        return channel.follow()

    async def cancel(self, run_id: str) -> Run:
        """Cancel a queued run now, a running one at its next safe point; a finished run is
        returned as it is."""
        run = await self.run(run_id)
        if run.status.finished:
            return run
        return await self._stop(run_id, run.session_id) or await self.run(run_id)

    async def _stop(self, run_id: str, session_id: str) -> Run | None:
        if self.worker.cancel(run_id):
            return None
        try:
            run = await self.stores.runs.transition(
                self._tenant, run_id, RunStatus.CANCELLED, expected=(RunStatus.QUEUED,)
            )
        except Conflict:
            self.worker.cancel(run_id)  # claimed meanwhile: it stops at its first safe point
            return None
        self.lanes.release(session_id, run_id)
        self.events.emit(run_id, RunFinished(run=run))
        return run

    # ------------------------------------------------------------------ chat completions

    async def chat(
        self, model: str, messages: list[Message], *, session_id: str | None
    ) -> RunFinished:
        """``"model": "agent/<name>"`` on chat completions, answered whole."""
        session, stateless = await self._chat_session(model, session_id)
        try:
            run = await self.submit(session.id, _turn(messages, stateless))
            return await self.finished(run.id)
        finally:
            if stateless:
                await self.stores.sessions.delete(self._tenant, session.id)

    async def chat_stream(
        self, model: str, messages: list[Message], *, session_id: str | None
    ) -> AsyncGenerator[RunEvent, None]:
        """The same, as run events. Errors before the run is stored are raised from the first
        ``__anext__``."""
        session, stateless = await self._chat_session(model, session_id)
        try:
            run = await self.submit(session.id, _turn(messages, stateless))
            async for event in await self.follow(run.id):
                yield event
        finally:
            if stateless:
                await self.stores.sessions.delete(self._tenant, session.id)

    async def _chat_session(self, model: str, session_id: str | None) -> tuple[Session, bool]:
        agent = self.catalog.get(model.removeprefix(AGENT_PREFIX))
        if session_id is None or agent.scope is SessionScope.STATELESS:
            # a session of its own, deleted after the answer: one path for every run
            return await self.create_session(agent.name, metadata={"stateless": True}), True
        found = await self.stores.sessions.get(self._tenant, session_id)
        if found is None:
            return await self.create_session(agent.name, session_id=session_id), False
        if found.agent != agent.name:
            raise Conflict(
                f"session {session_id} belongs to agent {found.agent!r}", code="session_agent"
            )
        return found, False

    # ------------------------------------------------------------------ helpers

    async def _agent_of(self, run: Run) -> AgentSpec:
        session = await self.session(run.session_id)
        return self.catalog.pinned(session.agent, run.agent_version)

    async def _final(self, run: Run) -> RunFinished:
        return RunFinished(
            run=run, usage=usage_of(await self.stores.runs.steps(self._tenant, run.id))
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
