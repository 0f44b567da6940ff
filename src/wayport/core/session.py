"""Sessions, their messages, and the runs that answer them, as the stores keep them.

A *session* is one conversation with one agent; its history is an append-only list of
messages numbered ``seq = 1, 2, 3 …``. A *run* is one agent turn working on a session; it moves
through :class:`RunStatus` and leaves *steps* (one model call or one tool call each) behind as
checkpoints, so a run resumed after a crash skips what it already finished::

    >>> RunStatus.RUNNING in RUN_TRANSITIONS[RunStatus.QUEUED]
    True
    >>> sorted(s.value for s in leaving_for(RunStatus.QUEUED))  # who may be (re)queued
    ['requires_action', 'requires_approval', 'running']
    >>> RunStatus.COMPLETED.finished
    True

Every stored row belongs to a tenant; ``DEFAULT_TENANT`` is the one tenant until multi-tenancy
arrives. Timestamps are wall-clock seconds since the epoch (stores take a ``now`` callable).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Any, TypeAlias

from wayport.core.types import Message, Role, ToolCall

Json: TypeAlias = bool | int | float | str | list["Json"] | dict[str, "Json"] | None
"""A JSON value, as stored in ``metadata``, run ``input``/``output`` and step payloads."""

DEFAULT_TENANT = "default"


class Unset(Enum):
    """Marks an argument the caller left alone (``None`` is a value: "clear it")."""

    UNSET = "UNSET"


UNSET = Unset.UNSET


class RunStatus(StrEnum):
    QUEUED = "queued"  #: waiting for a worker to claim it
    RUNNING = "running"  #: claimed by a worker, which heartbeats while it works
    REQUIRES_ACTION = "requires_action"  #: waiting on the client (tool output, an approval)
    #: paused before a tool marked ``requires_approval``; ``POST /v1/runs/{id}/approve``
    #: queues it again (its ``output`` lists the calls under ``pending_approval``)
    REQUIRES_APPROVAL = "requires_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in _FINISHED

    @property
    def waiting(self) -> bool:
        """Paused until the client acts: nothing happens to the run until it does."""
        return self in (RunStatus.REQUIRES_ACTION, RunStatus.REQUIRES_APPROVAL)


_FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
UNFINISHED: frozenset[RunStatus] = frozenset(RunStatus) - _FINISHED

RUN_TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = MappingProxyType(
    {
        RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED}),
        # back to QUEUED: the worker gave it up, or its heartbeat went stale (crash)
        RunStatus.RUNNING: frozenset(
            {
                RunStatus.QUEUED,
                RunStatus.REQUIRES_ACTION,
                RunStatus.REQUIRES_APPROVAL,
                RunStatus.COMPLETED,
                RunStatus.FAILED,
                RunStatus.CANCELLED,
            }
        ),
        # the client answered: queue it again so that any worker may carry on
        RunStatus.REQUIRES_ACTION: frozenset(
            {RunStatus.QUEUED, RunStatus.FAILED, RunStatus.CANCELLED}
        ),
        # approved or denied (or cancelled): queued again, the runner acts on the decision
        RunStatus.REQUIRES_APPROVAL: frozenset(
            {RunStatus.QUEUED, RunStatus.FAILED, RunStatus.CANCELLED}
        ),
        RunStatus.COMPLETED: frozenset(),
        RunStatus.FAILED: frozenset(),
        RunStatus.CANCELLED: frozenset(),
    }
)
"""Which status may follow which. ``RUNNING`` is entered only by claiming a queued run."""


def leaving_for(
    to: RunStatus, expected: Collection[RunStatus] | None = None
) -> frozenset[RunStatus]:
    """The statuses a run may be in to move to ``to``, narrowed to ``expected`` when given.

    Raises ``ValueError`` when nothing is left: the transition can never succeed, which is a
    bug in the caller rather than a race.
    """
    if to is RunStatus.RUNNING:
        raise ValueError("a run becomes running only by being claimed")
    sources = frozenset(s for s, targets in RUN_TRANSITIONS.items() if to in targets)
    if expected is not None:
        sources &= frozenset(expected)
    if not sources:
        given = sorted(s.value for s in expected or ())
        raise ValueError(f"no run in {given} may move to {to.value!r}")
    return sources


class StepKind(StrEnum):
    MODEL = "model"  #: one model call; its payload is what the model answered
    TOOL = "tool"  #: one tool call; its payload is the tool's result


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    id: str
    tenant_id: str
    agent: str
    agent_version: str = ""
    created_at: float
    updated_at: float
    metadata: Mapping[str, Json] = field(default_factory=dict)
    summary: str | None = None  #: what the context engine condensed the old history into
    pinned: tuple[str, ...] = ()  #: facts kept in every context window, whatever its budget
    message_count: int = 0  #: also the ``seq`` of the newest message
    cold: bool = False  #: part of the history lives compressed in the archive


@dataclass(frozen=True, slots=True, kw_only=True)
class NewMessage:
    """A message to append. A retried append with the same ``idempotency_key`` (unique per
    session) stores nothing new and returns the message stored the first time."""

    message: Message
    tokens: int | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredMessage:
    session_id: str
    seq: int
    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    tokens: int | None = None
    created_at: float
    run_id: str | None = None  #: the run whose step produced it (``None``: sent by the user)
    step_no: int | None = None
    idempotency_key: str | None = None

    def to_message(self) -> Message:
        """The message in OpenAI shape, as a model expects it in its prompt."""
        msg: Message = {"role": self.role, "content": self.content}
        if self.name is not None:
            msg["name"] = self.name
        if self.tool_calls:
            msg["tool_calls"] = list(self.tool_calls)
        if self.tool_call_id is not None:
            msg["tool_call_id"] = self.tool_call_id
        return msg


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    id: str
    tenant_id: str
    session_id: str
    status: RunStatus
    input: Json = None
    output: Json = None
    error: str | None = None
    created_at: float
    updated_at: float
    attempt: int = 0  #: how many times a worker has claimed it
    claimed_by: str | None = None  #: the worker holding it while it is ``RUNNING``
    heartbeat_at: float | None = None
    agent_version: str = ""
    #: when a worker first began executing it (wall clock); ``run_timeout`` counts from here,
    #: across resumes. ``None`` until then.
    started_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStep:
    """A checkpoint: a finished step of a run. ``step_no`` is unique per run, so a step is
    recorded once; a resumed run starts after the last recorded step."""

    run_id: str
    step_no: int
    kind: StepKind
    payload: Json = None
    idempotency_key: str | None = None  #: lets a retried ``record_step`` find its own step
    created_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRecord:
    """What ``RunStore.record_step`` stored: the step and the messages it appended."""

    step: RunStep
    messages: Sequence[StoredMessage] = ()
    replayed: bool = False  #: the step was already stored under the same idempotency key


# --- batched checkpoints (RunStore.checkpoint) ------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NewStep:
    """A finished step to checkpoint, with the messages it adds to the history."""

    step_no: int
    kind: StepKind
    payload: Json = None
    messages: Sequence[NewMessage] = ()
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEnd:
    """Where a checkpoint leaves the run: ``RUNNING`` moves to ``status``, dropping its claim."""

    status: RunStatus
    output: Json = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """What ``RunStore.checkpoint`` stored, in one transaction."""

    run: Run  #: the run as the checkpoint left it
    inbound: Sequence[StoredMessage] = ()
    steps: Sequence[StepRecord] = ()
