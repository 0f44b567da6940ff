"""Ports: the protocols that engines and adapters implement. Layers above depend on these,
never on a concrete adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from wayport.core.agent import ToolResult, ToolSpec
from wayport.core.session import (
    UNSET,
    Json,
    NewMessage,
    Run,
    RunStatus,
    RunStep,
    Session,
    StepKind,
    StepRecord,
    StoredMessage,
    Unset,
)
from wayport.core.types import ChatRequest, Chunk, Completion, EmbeddingRequest, Embeddings


class Clock(Protocol):
    """Monotonic time and sleeping; ``wayport.testing.ManualClock`` drives it by hand."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


@runtime_checkable
class ModelBackend(Protocol):
    """One deployment of one model: an embedded llama.cpp model, an OpenAI-compatible server,
    Anthropic … Implementations raise only ``wayport.core.errors`` exceptions.

    ``timeout`` is the time left in the caller's overall deadline, in seconds (``None``: no
    deadline); a backend applies the smaller of it and its own configured timeouts.
    """

    name: str

    async def start(self) -> None:
        """Open pools, preload weights. Called once before the first request."""

    async def close(self) -> None:
        """Release everything ``start`` took. Idempotent."""

    def ready(self) -> bool:
        """True when a request would be served without a cold start or a known outage."""

    async def complete(
        self, request: ChatRequest, *, timeout: float | None = None
    ) -> Completion: ...

    def stream(self, request: ChatRequest, *, timeout: float | None = None) -> AsyncIterator[Chunk]:
        """Yield chunks as they arrive. Errors before the first chunk are raised from the
        first ``__anext__``; an error mid-way is raised at that point."""

    async def embed(self, request: EmbeddingRequest, *, timeout: float | None = None) -> Embeddings:
        """Raise ``Unsupported`` where the backend has no embeddings."""


class Tool(Protocol):
    """One tool an agent may call. ``call`` gets arguments already validated against
    ``spec.parameters``; it returns a result (errors the model should see are results with
    ``is_error``) and raises only ``wayport.core.errors`` for failures of Wayport itself."""

    spec: ToolSpec

    async def call(
        self, arguments: Mapping[str, Any], *, idempotency_key: str, timeout: float | None
    ) -> ToolResult: ...


@runtime_checkable
class ColdStartReporting(Protocol):
    """A backend that loads weights reports how long its last (cold) load took."""

    @property
    def load_seconds(self) -> float | None: ...


class RouterEvents(Protocol):
    """What the router reports as it works; telemetry implements it."""

    def attempt(self, model: str, deployment: str) -> None: ...

    def attempt_done(self, model: str, deployment: str, outcome: str, seconds: float) -> None: ...

    def retry(self, model: str, deployment: str, reason: str) -> None: ...

    def fallback(self, from_model: str, to_model: str, reason: str) -> None: ...

    def circuit(self, deployment: str, state: str) -> None: ...


# --- Stores ------------------------------------------------------------------------------------
# wayport.store implements these on SQLite and Postgres; wayport.testing.stores in memory. Every
# method takes the tenant first, and an id that belongs to another tenant behaves exactly like a
# missing one (``None`` or ``NotFound``): a caller cannot reach across tenants. Failures raise
# ``wayport.core.errors``: ``NotFound``, ``Conflict`` (a uniqueness or status check lost),
# ``StoreError`` (the database itself failed).


class SessionStore(Protocol):
    """Sessions and their append-only history, numbered ``seq = 1, 2, 3 …``. A retried
    message (same idempotency key) is stored once::

        s = await sessions.create("default", agent="support")
        user = NewMessage(message={"role": "user", "content": "hi"}, idempotency_key="msg-1")
        [stored] = await sessions.append("default", s.id, [user])  # stored.seq == 1
        page = await sessions.history("default", s.id, after=0, limit=50)
    """

    async def create(
        self,
        tenant: str,
        *,
        agent: str,
        agent_version: str = "",
        metadata: Mapping[str, Json] | None = None,
        session_id: str | None = None,
    ) -> Session:
        """Raises ``Conflict`` when ``session_id`` is taken in this tenant."""

    async def get(self, tenant: str, session_id: str) -> Session | None: ...

    async def update(
        self,
        tenant: str,
        session_id: str,
        *,
        agent_version: str | Unset = UNSET,
        summary: str | Unset | None = UNSET,
        pinned: Sequence[str] | Unset = UNSET,
        metadata: Mapping[str, Json] | Unset = UNSET,
    ) -> Session:
        """Change what is given, leave the rest. Raises ``NotFound``."""

    async def delete(self, tenant: str, session_id: str) -> None:
        """Remove the session with its messages, archive, runs and run steps, all at once.
        Raises ``NotFound``."""

    async def append(
        self, tenant: str, session_id: str, messages: Sequence[NewMessage]
    ) -> list[StoredMessage]:
        """Store ``messages`` at the end of the history in one transaction; return them as
        stored, in order (a repeated idempotency key returns the earlier message). Raises
        ``NotFound``."""

    async def history(
        self, tenant: str, session_id: str, *, after: int = 0, limit: int = 100
    ) -> list[StoredMessage]:
        """Messages with ``seq > after``, oldest first, at most ``limit``; archived ones are
        read back transparently. Page on with ``after=page[-1].seq``. Raises ``NotFound``."""

    async def archive(self, tenant: str, session_id: str, *, keep_last: int = 0) -> int:
        """Compress all but the newest ``keep_last`` messages into the archive and mark the
        session cold; return how many moved. Raises ``NotFound``."""

    async def idle(self, tenant: str, *, updated_before: float, limit: int = 100) -> list[Session]:
        """Sessions untouched since ``updated_before`` that still have history to archive,
        least recently updated first."""


class RunStore(Protocol):
    """Runs, their status machine (``wayport.core.session.RUN_TRANSITIONS``) and their step
    checkpoints::

        run = await runs.create("default", session_id=s.id, input={"text": "hi"})
        [run] = await runs.claim("default", worker="w1")  # QUEUED -> RUNNING
        await runs.record_step("default", run.id, step_no=1, kind=StepKind.MODEL,
                               payload=answer, messages=[NewMessage(message=reply)])
        await runs.transition("default", run.id, RunStatus.COMPLETED, output=answer)
    """

    async def create(
        self,
        tenant: str,
        *,
        session_id: str,
        input: Json = None,
        agent_version: str = "",
        run_id: str | None = None,
    ) -> Run:
        """A new ``QUEUED`` run. Raises ``NotFound`` (session), ``Conflict`` (``run_id``)."""

    async def get(self, tenant: str, run_id: str) -> Run | None: ...

    async def transition(
        self,
        tenant: str,
        run_id: str,
        to: RunStatus,
        *,
        expected: Sequence[RunStatus] | None = None,
        output: Json | Unset = UNSET,
        error: str | Unset | None = UNSET,
    ) -> Run:
        """Move the run to ``to`` if its status is one of ``expected`` (default: any status
        allowed to move there). Leaving ``RUNNING`` drops the claim. Raises ``NotFound``,
        ``Conflict`` (the status was not as expected), ``ValueError`` (never allowed)."""

    async def claim(self, tenant: str, *, worker: str, limit: int = 1) -> list[Run]:
        """Move up to ``limit`` of the oldest ``QUEUED`` runs to ``RUNNING`` for ``worker``;
        concurrent claimers never get the same run."""

    async def heartbeat(self, tenant: str, run_id: str, *, worker: str) -> Run:
        """Tell the store ``worker`` still works on the run. Raises ``NotFound``, and
        ``Conflict`` when the run is no longer ``RUNNING`` for this worker: stop working."""

    async def requeue_stale(
        self, tenant: str, *, stale_before: float, limit: int = 100
    ) -> list[Run]:
        """Put ``RUNNING`` runs whose last heartbeat is older than ``stale_before`` back in
        the queue (their worker died); return them."""

    async def unfinished(self, tenant: str, *, limit: int = 100) -> list[Run]:
        """Runs not yet finished, oldest first: what a restarted process resumes."""

    async def record_step(
        self,
        tenant: str,
        run_id: str,
        *,
        step_no: int,
        kind: StepKind,
        payload: Json = None,
        messages: Sequence[NewMessage] = (),
        idempotency_key: str | None = None,
        worker: str | None = None,
    ) -> StepRecord:
        """Checkpoint a finished step and append the messages it produced to the run's
        session, in one transaction: both are stored or neither. With ``worker`` the run
        must be ``RUNNING`` for that worker. Recording a step number again raises
        ``Conflict``, unless ``idempotency_key`` matches, which returns the stored record.
        Raises ``NotFound``."""

    async def steps(self, tenant: str, run_id: str) -> list[RunStep]:
        """The run's recorded steps by ``step_no``. Raises ``NotFound``."""
