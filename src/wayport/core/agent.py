"""Agents: what an agent is (instructions, model route, tools, limits, policies) and the
events a run emits. Pure data; the run loop in ``wayport.runtime`` executes it.

An agent definition is immutable once built; its ``version`` is a content hash, so editing an
agent yields a new version and a run in progress keeps the one it started with::

    >>> a = AgentSpec(name="assistant", model="smollm2", instructions="Be brief.")
    >>> b = AgentSpec(name="assistant", model="smollm2", instructions="Be very brief.")
    >>> a.version != b.version and len(a.version) == 12
    True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from wayport.core.session import Run
from wayport.core.types import ToolCall, Usage


class QueueMode(StrEnum):
    ENQUEUE = "enqueue"  #: wait for the session's current run, then start (default)
    REJECT = "reject"  #: 409 while a run is in progress
    INTERRUPT = "interrupt"  #: cancel the current run at a safe point, then start


class SessionScope(StrEnum):
    SESSION = "session"  #: history kept per session id (the default)
    STATELESS = "stateless"  #: nothing kept; every call stands alone


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolSpec:
    """What the model is told about a tool, plus how Wayport must treat it."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    side_effects: bool = True  #: not executed in shadow traffic; idempotency key sent
    requires_approval: bool = False  #: the run pauses (requires_action) until approved

    def definition(self) -> dict[str, Any]:
        """The OpenAI ``tools[]`` entry."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolResult:
    content: str  #: what goes back to the model (already serialised)
    is_error: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    max_steps: int = 8  #: model calls per run
    max_tool_calls: int = 16  #: tool executions per run
    max_tokens_per_run: int | None = None  #: completion tokens across the run's model calls
    run_timeout: float = 300.0  #: seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextPolicy:
    budget_tokens: int | None = None  #: None: the model's context window minus max_tokens
    reserve_tokens: int = 256  #: kept free for the answer when budget is derived
    compact_at: float = 0.8  #: share of the budget at which older turns get summarised
    keep_recent_turns: int = 6  #: never summarised
    summary_model: str | None = None  #: None: the agent's own model
    tool_result_max_chars: int = 4000  #: larger tool results are cut to head + tail in context


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSpec:
    name: str
    model: str  #: a public model group name (its fallbacks come from the router config)
    description: str = ""
    instructions: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)  #: temperature, max_tokens …
    tools: tuple[str, ...] = ()  #: names of tools from the tool registry
    limits: Limits = field(default_factory=Limits)
    context: ContextPolicy = field(default_factory=ContextPolicy)
    scope: SessionScope = SessionScope.SESSION
    queue_mode: QueueMode = QueueMode.ENQUEUE
    max_queue: int = 16  #: pending runs per session before 429

    @property
    def version(self) -> str:
        """A content hash over everything that changes behaviour."""
        blob = json.dumps(asdict(self), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# Events a run emits while it works (streamed to clients, published across replicas later).


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted:
    run: Run


@dataclass(frozen=True, slots=True, kw_only=True)
class TextDelta:
    run_id: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCalled:
    run_id: str
    call: ToolCall


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolReturned:
    run_id: str
    call_id: str
    result: ToolResult


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished:
    """The last event of every run: completed, failed, cancelled or requires_action."""

    run: Run
    usage: Usage = field(default_factory=Usage)


RunEvent = RunStarted | TextDelta | ToolCalled | ToolReturned | RunFinished
