"""Where a run stands: the input it was created with, its progress rebuilt from its recorded
steps (``Progress.replay``), which the run loop then carries forward step by step, and the
``Outcome`` the loop ends it with.

    run = await runs.create(..., input=run_input([{"role": "user", "content": "hi"}]))
    usage_of(await runs.steps(run.tenant_id, run.id))   # the tokens its model steps used
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from wayport.core.session import Json, NewMessage, Run, RunStatus, RunStep, StepKind
from wayport.core.types import Message, ToolCall, Usage

__all__ = ["Outcome", "Progress", "failed", "inbound_of", "input_messages", "run_input", "usage_of"]


def run_input(messages: Sequence[Message]) -> Json:
    """The ``input`` a run is created with: the messages it adds to the session."""
    return {"messages": cast(Json, [dict(m) for m in messages])}


def input_messages(run: Run) -> list[Message]:
    value = run.input
    found = value.get("messages") if isinstance(value, dict) else None
    return cast(list[Message], found) if isinstance(found, list) else []


def inbound_of(run: Run) -> list[NewMessage]:
    """The run's input as the messages it adds to its session, keyed so a retry adds none."""
    return [
        NewMessage(message=m, idempotency_key=f"{run.id}:in:{i}")
        for i, m in enumerate(input_messages(run))
    ]


def usage_of(steps: Sequence[RunStep]) -> Usage:
    """The tokens a run's recorded model steps used."""
    return Progress.replay(steps).usage


@dataclass(slots=True)
class Progress:
    """Where a run stands, rebuilt from its recorded steps."""

    next_step: int = 1
    model_steps: int = 0
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    pending: list[ToolCall] = field(default_factory=list)  #: calls still without a result
    answer: str | None = None
    answered: bool = False
    inbound: list[NewMessage] = field(default_factory=list)  #: the input, not stored yet
    final: Run | None = None  #: the run as the checkpoint that ended it left it
    #: releases: ``{"attempted": candidate, "answered_by": stable}`` after a failover, kept
    #: in the run's output (its ``agent_version`` becomes the stable one that answered)
    failover: dict[str, Json] | None = None

    @classmethod
    def replay(cls, steps: Sequence[RunStep]) -> Progress:
        p = cls()
        for step in steps:
            p.next_step = step.step_no + 1
            payload = step.payload if isinstance(step.payload, dict) else {}
            if step.kind is StepKind.MODEL:
                p.model_steps += 1
                usage = payload.get("usage")
                if isinstance(usage, list) and len(usage) == 2:
                    p.prompt_tokens += int(cast(int, usage[0]))
                    p.completion_tokens += int(cast(int, usage[1]))
                calls = payload.get("tool_calls")
                p.pending = list(cast(list[ToolCall], calls)) if isinstance(calls, list) else []
                content = payload.get("content")
                p.answer = content if isinstance(content, str) else None
                p.answered = not p.pending
            elif not payload.get("closing"):
                p.tool_calls += 1
                done = payload.get("call_id")
                p.pending = [c for c in p.pending if c["id"] != done]
            else:
                p.pending = [c for c in p.pending if c["id"] != payload.get("call_id")]
        return p

    @property
    def usage(self) -> Usage:
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens)

    def output(self, output: Json) -> Json:
        """The run's output, with the failover that answered it (releases)."""
        if self.failover is None:
            return output
        return {**(output if isinstance(output, dict) else {}), "failover": self.failover}


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How the run loop ends a run: its status, and the error or output that goes with it."""

    status: RunStatus
    error: str | None = None
    output: Json = None  #: what a paused run shows (the calls awaiting approval)


def failed(error: str) -> Outcome:
    return Outcome(status=RunStatus.FAILED, error=error)
