"""Ports: the protocols that engines and adapters implement. Layers above depend on these,
never on a concrete adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass  # agent definitions
from typing import Any, Protocol, runtime_checkable

from wayport.core.agent import AgentSpec, RunFinished, ToolResult, ToolSpec
from wayport.core.channels import (  # channels
    Delivered,
    Inbound,
    InboxEntry,
    InboxStatus,
    Outbound,
    OutboxItem,
    OutboxStatus,
    PairingCode,
    WebhookAnswer,
    WebhookRequest,
)
from wayport.core.identity import ApiKey, AuditEntry, Tenant
from wayport.core.limits import Charge  # limits and usage
from wayport.core.release import RolloutState, Strategy  # releases
from wayport.core.release_records import (  # releases
    EvalResult,
    Feedback,
    Picked,
    ReleaseEvent,
    Rollout,
    VersionInfo,
)
from wayport.core.release_signals import Aggregate  # releases
from wayport.core.session import (
    UNSET,
    Checkpoint,
    Json,
    NewMessage,
    NewStep,
    Run,
    RunEnd,
    RunStatus,
    RunStep,
    Session,
    StepKind,
    StepRecord,
    StoredMessage,
    Unset,
)
from wayport.core.types import (
    ChatRequest,
    Chunk,
    Completion,
    EmbeddingRequest,
    Embeddings,
    Message,  # releases
    ToolCall,
)
from wayport.core.usage import UsageRecord, UsageTotal  # limits and usage
from wayport.core.webhooks import Webhook
from wayport.core.workflow_plan import StepStatus  # workflows
from wayport.core.workflow_run import StepRow, WorkflowRun, WorkflowStatus  # workflows


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


# --- Run observation (telemetry: run metrics and gen_ai spans) --------------------------------


class RunWatch(Protocol):
    """One attempt of a run being watched; told when its first text was produced (time to
    first token) and how it ended."""

    def first_token(self) -> None: ...

    def finished(self, event: RunFinished) -> None: ...


class RunObserver(Protocol):
    """What the agent run loop reports as it works; telemetry implements it. ``run`` wraps
    one attempt of a run (its model calls happen inside); ``tool`` wraps one tool call."""

    def run(self, run: Run, agent: AgentSpec) -> AbstractContextManager[RunWatch]: ...

    async def tool(self, run: Run, call: ToolCall, result: Awaitable[ToolResult]) -> ToolResult: ...


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

    async def recent(
        self,
        tenant: str,
        *,
        limit: int = 50,
        before: tuple[float, str] | None = None,
        agent: str | None = None,
    ) -> list[Session]:
        """Sessions newest first (``updated_at``, then id, both descending), at most ``limit``
        (at least 1, else ``InvalidRequest``), only ``agent``'s when given. Page on with
        ``before=(page[-1].updated_at, page[-1].id)`` (keyset: no offsets to skip)."""


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
        worker: str | None = None,
    ) -> Run:
        """A new ``QUEUED`` run. Raises ``NotFound`` (session), ``Conflict`` (``run_id``).
        With ``worker`` it is created already claimed by that worker (``RUNNING``, attempt 1,
        ``started_at`` now), for a process that executes it at once: no queue, no claim."""

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

    # BEGIN agent turns (batched checkpoints, pinned agent versions)
    async def checkpoint(
        self,
        tenant: str,
        run_id: str,
        *,
        inbound: Sequence[NewMessage] = (),
        steps: Sequence[NewStep] = (),
        end: RunEnd | None = None,
        started_at: float | None = None,
        worker: str | None = None,
    ) -> Checkpoint:
        """Everything a run stores at one point, in one transaction (one commit): the
        ``inbound`` messages joining the history (deduplicated by idempotency key, as
        ``SessionStore.append``), then each of ``steps`` with its messages (as
        ``record_step``: a step number recorded again under the same key is replayed), then,
        with ``end``, the move to ``end.status``; ``started_at`` is kept unless one is stored
        (an ``end`` that waits for the client, ``RunStatus.waiting``, clears it: the run's
        clock starts again once the client has answered). The run must be ``RUNNING`` (for
        ``worker``, when given). All or nothing. Raises ``NotFound``, ``Conflict`` (not
        running, or not this worker's; a step number taken), ``ValueError`` (an end of
        ``RUNNING``)."""

    async def pin_agent(self, tenant: str, spec: AgentSpec) -> None:
        """Keep ``spec`` under ``(spec.name, spec.version)``; a version stored before stays
        as it is (the version is a content hash)."""

    async def pinned_agent(self, tenant: str, agent: str, version: str) -> AgentSpec | None:
        """The definition ``pin_agent`` kept for that version, ``None`` if none."""

    # END agent turns

    # BEGIN releases: failover
    async def set_agent_version(
        self, tenant: str, run_id: str, version: str, *, worker: str | None = None
    ) -> Run:
        """Make ``version`` the one the run executes (a failover to the stable version), so
        a resumed run goes on there. The run must be ``RUNNING`` (for ``worker``, when
        given). Raises ``NotFound``, ``Conflict``."""

    # END releases: failover


# --- Channels ----------------------------------------------------------------------------------
# BEGIN channels (wayport.channels implements ChannelAdapter; wayport.store.channels ChannelStore)


@runtime_checkable
class ChannelAdapter(Protocol):
    """One configured channel on one platform. Adapters translate, verify and deliver; what is
    stored, routed and retried is ``wayport.service.channels``' business. Failures raise
    ``wayport.core.errors``: ``AuthError`` for a bad signature, ``InvalidRequest`` for a payload
    it cannot read, ``BackendError`` subclasses (retriable or not) when delivery fails."""

    name: str  #: the channel's configured name
    max_chars: int  #: the platform's limit on one message's text
    can_edit: bool  #: ``send`` honours ``Outbound.edit`` (progressive edits while streaming)

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def receive(self, request: WebhookRequest) -> WebhookAnswer:
        """Verify a webhook request (signature, token, timestamp) and parse it."""

    async def send(self, message: Outbound) -> Delivered: ...

    async def typing(self, chat: str, thread: str | None) -> None:
        """Show a typing indicator where the platform has one; else do nothing."""


@runtime_checkable
class PollingAdapter(Protocol):
    """A channel that fetches its messages (Telegram ``getUpdates``). ``poll`` returns the next
    batch after ``cursor`` (waiting up to ``timeout``) and the cursor that confirms it: the
    caller stores the batch first, then passes that cursor to the next ``poll``."""

    async def poll(
        self, cursor: str | None, *, timeout: float
    ) -> tuple[list[Inbound], str | None]: ...


class ChannelStore(Protocol):
    """The channel inbox (deduplicated inbound messages), outbox and pairing codes."""

    async def accept(
        self, tenant: str, message: Inbound, *, entry_id: str
    ) -> tuple[InboxEntry, bool]:
        """Store ``message`` unless its ``(channel, message_id)`` is stored already; return
        the entry and whether it is new."""

    async def set_inbox(
        self,
        tenant: str,
        entry_id: str,
        status: InboxStatus,
        *,
        run_id: str | None = None,
        reason: str | None = None,
    ) -> None: ...

    async def unfinished_inbox(self, tenant: str, *, limit: int = 100) -> list[InboxEntry]:
        """Entries ``received`` or ``started``: what a restarted process carries on with."""

    async def enqueue(self, tenant: str, items: Sequence[OutboxItem]) -> None:
        """Add items; one whose id is stored already is left as it is."""

    async def pending(self, tenant: str, *, limit: int = 500) -> list[OutboxItem]:
        """Pending items, by target and id (to inspect; the dispatcher reads ``heads``)."""

    async def heads(self, tenant: str, *, limit: int = 500) -> list[OutboxItem]:
        """The oldest pending item (by ``created_at``, then id) of each conversation, a
        ``(channel, target)``, for at most ``limit`` conversations, oldest heads first."""

    async def outbox(self, tenant: str, item_id: str) -> OutboxItem | None: ...

    async def settle(
        self,
        tenant: str,
        item_id: str,
        status: OutboxStatus,
        *,
        attempts: int,
        next_attempt_at: float = 0.0,
        reason: str | None = None,
        platform_id: str | None = None,
    ) -> None:
        """Record an attempt's outcome on a pending item."""

    async def pairing(self, tenant: str, channel: str, sender: str) -> PairingCode | None: ...

    async def pending_pairings(self, tenant: str, channel: str, *, now: float) -> int: ...

    async def put_pairing(self, tenant: str, code: PairingCode) -> None:
        """Store the sender's code, replacing an expired one."""

    async def approve_pairing(
        self, tenant: str, channel: str, code: str, *, now: float
    ) -> PairingCode:
        """Approve a pending code. Raises ``NotFound`` (unknown or expired)."""

    async def claim_nonce(
        self, tenant: str, channel: str, nonce: str, *, expires_at: float, now: float
    ) -> bool:
        """Record ``nonce`` (a request signature) until ``expires_at``; False when it is
        recorded and not yet expired: the request is a replay."""

    async def release_nonce(self, tenant: str, channel: str, nonce: str) -> None:
        """Forget a claimed nonce (its request failed before it was stored)."""

    async def sweep_nonces(self, tenant: str, *, now: float) -> int:
        """Delete the nonces expired at ``now``; how many."""


# END channels


# BEGIN webhooks (run completion webhooks; see wayport.service.webhooks)
class WebhookOutbox(Protocol):
    """Run completion webhooks, kept durably until delivered (``wayport.store.outbox``)."""

    async def arm(self, tenant: str, *, run_id: str, url: str, secret: str | None) -> None:
        """Record the run's webhook; a second ``arm`` for the same run changes nothing."""
        ...

    async def due(self, tenant: str, *, now: float, lease: float, limit: int = 50) -> list[Webhook]:
        """Armed webhooks whose run has finished and
        whose next attempt is due; each is leased (not due again) for ``lease`` seconds."""
        ...

    async def delivered(self, tenant: str, run_id: str, *, now: float) -> None: ...

    async def failed(self, tenant: str, run_id: str, *, error: str, retry_at: float | None) -> None:
        """Record a failed attempt: try again at ``retry_at``, or give up when ``None``."""
        ...

    async def get(self, tenant: str, run_id: str) -> Webhook | None: ...


# END webhooks


# BEGIN agent definitions (the admin API's agents; wayport.store.agents implements it on SQL)
class AgentStore(Protocol):
    """Agents a tenant defined over the API, one current definition per name. ``revision``
    counts the replacements (1 on create), so a cache can tell a stale copy."""

    async def put(self, tenant: str, spec: AgentSpec) -> StoredAgent:
        """Create or replace ``spec.name``; return the stored row."""
        ...

    async def get(self, tenant: str, name: str) -> StoredAgent | None: ...

    async def list(self, tenant: str) -> list[StoredAgent]:
        """Every definition of ``tenant``, by name."""
        ...

    async def delete(self, tenant: str, name: str) -> bool:
        """``False`` when there was none."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredAgent:
    spec: AgentSpec
    revision: int
    created_at: float
    updated_at: float


# END agent definitions


# BEGIN limits and usage (budgets, rate limits, the usage ledger; see wayport.service.limits)
class Limiter(Protocol):
    """Counters behind rate limits and budgets (``wayport.core.limits``): in process
    (``wayport.runtime.limiter``), in SQL (``wayport.store.budgets``), in Redis
    (``wayport.store.redis_limiter``). Counters are per tenant, keyed by ``Charge.key``::

        await limiter.reserve("acme", charges, now=time.time())     # all of them, or none
        await limiter.adjust("acme", settlement(charges, tokens=812, cost=0.002), now=…)
    """

    async def reserve(self, tenant: str, charges: Sequence[Charge], *, now: float) -> None:
        """Move every counter by its charge if each stays within its limit; otherwise move
        none and raise ``RateLimited`` (``BudgetExceeded`` for a spend window) naming the
        first that did not fit, with ``retry_after``. Atomic against concurrent callers."""

    async def adjust(
        self, tenant: str, moves: Sequence[tuple[Charge, float]], *, now: float
    ) -> None:
        """Move each counter by its delta whatever its limit (settling never refuses)."""

    async def used(self, tenant: str, charge: Charge, *, now: float) -> float:
        """What the charge's counter holds now (0 when it was never used)."""


class UsageStore(Protocol):
    """The usage ledger: append-only records, queried as totals per group."""

    async def record(self, records: Sequence[UsageRecord]) -> None:
        """Store every record (each carries its tenant) in one transaction."""

    async def totals(
        self,
        tenant: str,
        *,
        group_by: str,
        since: float | None = None,
        until: float | None = None,
    ) -> list[UsageTotal]:
        """Records with ``since <= at < until`` added up per ``group_by`` (one of
        ``wayport.core.usage.GROUPS``), largest cost first."""

    async def records(
        self,
        tenant: str,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[UsageRecord]:
        """The records themselves, oldest first (for export)."""


# END limits and usage


# --- Security (tenants, API keys, audit log) ----------------------------------------------------
# BEGIN security (wayport.store.keys / tenants / audit implement these on SQL)


class KeyStore(Protocol):
    """API keys, hashed, read within their tenant (the key's prefix names it)."""

    async def create(self, key: ApiKey) -> ApiKey:
        """Raises ``Conflict`` for a taken id."""

    async def get(self, tenant: str, key_id: str) -> ApiKey | None: ...

    async def list(self, tenant: str) -> list[ApiKey]: ...

    async def revoke(self, tenant: str, key_id: str, *, at: float) -> ApiKey:
        """Raises ``NotFound``; a revoked key keeps its first revocation time."""

    async def touch(self, tenant: str, used: Mapping[str, float]) -> None:
        """Record last-used times (never moving one backwards)."""


class TenantStore(Protocol):
    async def create(self, tenant: Tenant) -> Tenant:
        """Raises ``Conflict`` when the id is taken."""

    async def get(self, tenant_id: str) -> Tenant | None: ...

    async def list(self, *, org: str | None = None) -> list[Tenant]: ...


class AuditStore(Protocol):
    """Each tenant's append-only, hash-chained log; there is no way to change an entry."""

    async def append(
        self,
        tenant: str,
        *,
        actor: str | None,
        action: str,
        target: str | None,
        details: Mapping[str, Any],
        at: float,
    ) -> AuditEntry: ...

    async def list(self, tenant: str, *, after: int = 0, limit: int = 100) -> list[AuditEntry]: ...


# END security


# BEGIN workflows


class WorkflowStore(Protocol):
    """Durable workflow runs and step checkpoints (``wayport.store.workflows``)."""

    async def definition(
        self, tenant: str, name: str, version: str
    ) -> Mapping[str, Any] | None: ...

    async def create_run(
        self,
        tenant: str,
        *,
        run_id: str,
        workflow: str,
        version: str,
        definition: Mapping[str, Any],
        input: Any = None,
        trigger: str = "api",
        parent_run_id: str | None = None,
        parent_step: str | None = None,
    ) -> tuple[WorkflowRun, bool]: ...

    async def get(self, tenant: str, run_id: str) -> WorkflowRun | None: ...

    async def list_runs(
        self,
        tenant: str,
        *,
        workflow: str | None = None,
        status: WorkflowStatus | None = None,
        limit: int = 50,
    ) -> list[WorkflowRun]: ...

    async def steps(self, tenant: str, run_id: str) -> list[StepRow]: ...

    async def claim(self, tenant: str, *, worker: str, limit: int = 1) -> list[WorkflowRun]: ...

    async def heartbeat(self, tenant: str, run_ids: Sequence[str], *, worker: str) -> set[str]: ...

    async def requeue_stale(self, tenant: str, *, stale_before: float) -> list[str]: ...

    async def active_tenants(self) -> list[str]: ...

    async def save_steps(
        self, tenant: str, run_id: str, rows: Sequence[StepRow], *, worker: str | None
    ) -> None: ...

    async def park(
        self, tenant: str, run_id: str, *, worker: str, revision: int, wake_at: float | None
    ) -> bool: ...

    async def finish(
        self,
        tenant: str,
        run_id: str,
        to: WorkflowStatus,
        *,
        worker: str | None,
        output: Any = None,
        error: str | None = None,
    ) -> WorkflowRun: ...

    async def resolve_step(
        self,
        tenant: str,
        run_id: str,
        path: str,
        *,
        status: StepStatus,
        output: Any = None,
        error: str | None = None,
    ) -> WorkflowRun: ...


class WorkflowObserver(Protocol):
    """Told about every step of every workflow run: tracing turns each step into a span
    (``step_started`` opens it, ``step_finished`` ends it), metrics count them. Called on the
    event loop; must not block."""

    def step_started(self, run: WorkflowRun, path: str, kind: str, attempt: int) -> None: ...

    def step_finished(
        self,
        run: WorkflowRun,
        path: str,
        kind: str,
        status: str,
        seconds: float,
        error: str | None,
    ) -> None: ...

    def run_finished(self, run: WorkflowRun) -> None: ...


# END workflows


# BEGIN releases
class ReleaseStore(Protocol):
    """Rollouts (one per agent, changed only by compare-and-set on ``revision`` so replicas
    agree), their history, per-version signal slices, feedback, eval results
    (``wayport.store.releases`` on SQL, ``wayport.testing.releases`` in memory)."""

    async def rollout(self, tenant: str, agent: str) -> Rollout | None: ...

    async def rollouts(self, tenant: str) -> list[Rollout]: ...

    async def put_rollout(
        self,
        tenant: str,
        state: RolloutState,
        strategy: Strategy,
        *,
        expected: int | None,
        window_start: float,
        now: float,
    ) -> Rollout:
        """Write the rollout of ``state.agent``; ``expected``: the revision read (``None``: no
        rollout, or only a finished one, may exist). Raises ``Conflict`` when another writer
        got there first."""

    async def add_event(
        self, tenant: str, agent: str, event: str, detail: Mapping[str, Any], *, at: float
    ) -> ReleaseEvent: ...

    async def events(self, tenant: str, agent: str, *, limit: int = 50) -> list[ReleaseEvent]:
        """Newest first."""

    async def add_signals(
        self,
        tenant: str,
        slices: Sequence[tuple[str, str, float, Aggregate]],
        *,
        replica: str,
    ) -> None:
        """Add ``(agent, version, bucket, aggregate)`` slices to this replica's rows."""

    async def signals(self, tenant: str, agent: str, version: str, *, since: float) -> Aggregate:
        """Every replica's slices from ``since`` on, merged."""

    async def add_feedback(self, tenant: str, feedback: Feedback) -> None:
        """One vote per run; a second replaces the first."""

    async def feedback_counts(
        self, tenant: str, agent: str, version: str, *, since: float
    ) -> tuple[int, int]:
        """``(up, down)`` from ``since`` on."""

    async def add_eval(self, tenant: str, result: EvalResult) -> None: ...

    async def latest_eval(
        self, tenant: str, agent: str, version: str, *, suite: str | None = None
    ) -> EvalResult | None: ...

    async def versions(self, tenant: str, agent: str) -> list[VersionInfo]:
        """The stored definitions of ``agent`` (``agent_versions``), oldest first."""


class VersionPicker(Protocol):
    """Which definition of an agent a new session or run uses (releases implement it)."""

    async def pick(
        self,
        tenant: str,
        agent: AgentSpec,
        *,
        key: str | None,
        pinned: str | None = None,
        preview: str | None = None,
    ) -> Picked:
        """``agent``: the configured definition; ``key``: the sticky key (session, else user);
        ``pinned``: the version the session started on; ``preview``: a requested version
        (blue-green preview header)."""

    async def fallback(self, run: Run, agent: AgentSpec) -> AgentSpec | None:
        """The stable definition to retry ``run`` on when ``agent`` is a candidate that
        failed before answering anything; ``None``: no failover."""

    def mirror(self, tenant: str, run: Run, messages: Sequence[Message], shadow: AgentSpec) -> None:
        """Run a copy of ``run``'s turn on ``shadow`` in the background, its answer recorded
        for comparison and never sent, tools with side effects not executed."""


# END releases


# BEGIN scale-out (docs/scaling.md)
class Bus(Protocol):
    """Messages between the replicas of one deployment: each run's event log (so a client on
    one replica follows a run executing on another) and broadcast topics (cancellation, key
    revocation). In process: ``wayport.runtime.bus.LocalBus``; across replicas:
    ``wayport.store.redis_bus.RedisBus``::

        bus.subscribe("cancel", worker.cancel)     # before start
        await bus.start()
        bus.append(run.id, data, last=False)        # ordered, never blocks the caller
        async for data in bus.read(run.id): ...     # from the first entry; ends after the last
        await bus.publish("cancel", run.id)         # every replica's handler, this one's too
    """

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Write what ``append`` still holds, then disconnect."""

    def append(self, run_id: str, data: bytes, *, last: bool) -> None:
        """Add ``data`` to the run's log, after everything appended before; ``last`` ends it."""

    def read(self, run_id: str) -> AsyncIterator[bytes]:
        """Every entry of the run's log from the first, then new ones as they come; ends
        after the ``last`` one."""

    async def publish(self, topic: str, message: str) -> None:
        """Deliver ``message`` to every replica's handlers of ``topic``."""

    def subscribe(self, topic: str, handler: Callable[[str], None]) -> None:
        """Call ``handler`` with each message published on ``topic`` (register before start)."""


# END scale-out
