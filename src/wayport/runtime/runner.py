"""The agent run loop: one run = model call -> tool calls -> model call … until the model
answers or a limit is hit, with every finished step checkpointed in the store.

    runner = Runner(model=gateway, sessions=store.sessions, runs=store.runs,
                    tools=registry, context=engine)
    finished = await runner.execute(run, agent, emit=print)   # run is RUNNING (claimed)
    finished.run.status, finished.run.output                  # completed, {"content": "…"}

**Checkpoints.** Each model answer and each tool result is one ``RunStore.record_step`` (the
step and the message it adds to the history, in one transaction). ``execute`` first replays the
recorded steps, so a run resumed after a crash calls neither a model step nor a tool step that
is already recorded; the step in flight at the crash runs again (at-least-once), and a tool
sees the same idempotency key (``"{run_id}:{step_no}:{call_id}"``) both times.

**The inbound message** travels in the run's ``input`` (stored before the client is answered)
and joins the history when the run starts, under an idempotency key, so a queued run's message
never lands between an earlier run's tool call and its answer.

**Limits fail the run.** ``max_steps``, ``max_tool_calls`` and ``max_tokens_per_run`` are
checked before each step and ``run_timeout`` bounds the whole attempt; hitting one fails the run
with an error naming it (an answer cut short is worse than a clear failure). What the run did so
far stays in the history; tool calls left without a result get an error result first, so the
history never holds a call without its answer. Cancelling (``stop()``) works the same way, at
the same safe points between steps. A model that emits broken tool-call JSON gets the
registry's error as the tool result and continues; the tool is not executed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from wayport.core.agent import (
    AgentSpec,
    RunEvent,
    RunFinished,
    TextDelta,
    ToolCalled,
    ToolResult,
    ToolReturned,
    ToolSpec,
)
from wayport.core.errors import NotFound, WayportError
from wayport.core.session import (
    Json,
    NewMessage,
    Run,
    RunStatus,
    RunStep,
    StepKind,
    StoredMessage,
)
from wayport.core.types import ChatRequest, Chunk, Message, ToolCall, ToolDef, Usage
from wayport.ports import RunStore, SessionStore

__all__ = [
    "ChatModel",
    "ContextWindow",
    "Runner",
    "Tools",
    "input_messages",
    "run_input",
    "usage_of",
]

_log = logging.getLogger(__name__)


class Tools(Protocol):
    """What the loop needs of the tool registry (``wayport.runtime.tools.ToolRegistry``)."""

    def specs(self, names: Iterable[str]) -> list[ToolSpec]: ...

    async def execute(
        self, name: str, arguments_json: str, *, idempotency_key: str, timeout: float | None
    ) -> ToolResult:
        """Parse, validate and call; a call that cannot run comes back as an error result."""


class ContextWindow(Protocol):
    """What the loop needs of the context engine (``wayport.runtime.context.ContextEngine``)."""

    async def window(
        self,
        tenant: str,
        session_id: str,
        agent: AgentSpec,
        pending: Sequence[Message],
        *,
        context_window: int,
    ) -> list[Message]: ...

    def appended(self, tenant: str, session_id: str, messages: Sequence[StoredMessage]) -> None: ...

    async def maybe_compact(
        self, tenant: str, session_id: str, agent: AgentSpec, *, context_window: int
    ) -> bool: ...


class ChatModel(Protocol):
    """What the loop needs of the model router (``Gateway`` and ``Router`` both fit)."""

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]: ...


def run_input(messages: Sequence[Message]) -> Json:
    """The ``input`` a run is created with: the messages it adds to the session."""
    return {"messages": cast(Json, [dict(m) for m in messages])}


def input_messages(run: Run) -> list[Message]:
    value = run.input
    found = value.get("messages") if isinstance(value, dict) else None
    return cast(list[Message], found) if isinstance(found, list) else []


def usage_of(steps: Sequence[RunStep]) -> Usage:
    """The tokens a run's recorded model steps used."""
    return _Progress.replay(steps).usage


def _never() -> bool:
    return False


@dataclass(slots=True)
class _Progress:
    """Where a run stands, rebuilt from its recorded steps."""

    next_step: int = 1
    model_steps: int = 0
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    pending: list[ToolCall] = field(default_factory=list)  #: calls still without a result
    answer: str | None = None
    answered: bool = False

    @classmethod
    def replay(cls, steps: Sequence[RunStep]) -> _Progress:
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


@dataclass(frozen=True, slots=True, kw_only=True)
class _Outcome:
    status: RunStatus
    error: str | None = None


class Runner:
    """Executes runs; holds no per-run state, so one runner serves every run of a process.

    ``context_window`` is the token budget handed to the context engine when the agent's
    policy sets none.
    """

    def __init__(
        self,
        *,
        model: ChatModel,
        sessions: SessionStore,
        runs: RunStore,
        tools: Tools,
        context: ContextWindow,
        context_window: int = 8192,
    ) -> None:
        self._model = model
        self._sessions = sessions
        self._runs = runs
        self._tools = tools
        self._context = context
        self._context_window = context_window

    async def execute(
        self,
        run: Run,
        agent: AgentSpec,
        *,
        emit: Callable[[RunEvent], None],
        stop: Callable[[], bool] = _never,
        worker: str | None = None,
    ) -> RunFinished:
        """Carry ``run`` (``RUNNING``, claimed by ``worker``) to a finished status and return
        its last event (also emitted). Raises ``Conflict`` when the run was taken away (its
        claim lost) and ``StoreError`` when the store fails; the run then stays unfinished,
        for a later attempt."""
        progress = _Progress.replay(await self._runs.steps(run.tenant_id, run.id))
        if progress.next_step == 1:
            await self._add_input(run)
        limit = agent.limits.run_timeout
        deadline = asyncio.get_running_loop().time() + limit
        try:
            async with asyncio.timeout_at(deadline):
                outcome = await self._loop(run, agent, progress, emit, stop, worker, deadline)
        except TimeoutError:
            outcome = _Outcome(status=RunStatus.FAILED, error=f"run_timeout ({limit}s) reached")
        except _ModelFailed as exc:
            outcome = _failed(f"model failed: {exc}")
        if outcome.status is not RunStatus.COMPLETED:
            # A step cut off by the timeout may have been committed all the same.
            progress = _Progress.replay(await self._runs.steps(run.tenant_id, run.id))
            await self._close_pending(run, progress, outcome, worker)
        done = outcome.status is RunStatus.COMPLETED
        output: Json = {"content": progress.answer} if done else None
        final = await self._runs.transition(
            run.tenant_id,
            run.id,
            outcome.status,
            expected=(RunStatus.RUNNING,),
            output=output,
            error=outcome.error,
        )
        event = RunFinished(run=final, usage=progress.usage)
        emit(event)
        if done:
            await self._compact(run, agent)
        return event

    async def _compact(self, run: Run, agent: AgentSpec) -> None:
        """Fold old turns into the summary once the run is answered, so the wait for the
        summary model never delays an answer."""
        budget = agent.context.budget_tokens or self._context_window
        try:
            await self._context.maybe_compact(
                run.tenant_id, run.session_id, agent, context_window=budget
            )
        except NotFound:
            return  # a stateless call's session, deleted as soon as it was answered
        except WayportError as exc:
            # The history stays whole in the store; the next turn tries again.
            _log.warning("compaction of session %s failed: %s", run.session_id, exc.message)

    async def _loop(
        self,
        run: Run,
        agent: AgentSpec,
        p: _Progress,
        emit: Callable[[RunEvent], None],
        stop: Callable[[], bool],
        worker: str | None,
        deadline: float,
    ) -> _Outcome:
        limits = agent.limits
        while True:
            if p.answered:
                return _Outcome(status=RunStatus.COMPLETED)
            if stop():
                return _Outcome(status=RunStatus.CANCELLED, error="cancelled")
            if p.pending:
                if p.tool_calls >= limits.max_tool_calls:
                    return _failed(f"max_tool_calls ({limits.max_tool_calls}) reached")
                await self._tool_step(run, p, emit, worker, deadline)
                continue
            if p.model_steps >= limits.max_steps:
                return _failed(f"max_steps ({limits.max_steps}) reached")
            budget = limits.max_tokens_per_run
            if budget is not None and p.completion_tokens >= budget:
                return _failed(f"max_tokens_per_run ({budget}) reached")
            await self._model_step(run, agent, p, emit, worker)

    async def _add_input(self, run: Run) -> None:
        new = [
            NewMessage(message=m, idempotency_key=f"{run.id}:in:{i}")
            for i, m in enumerate(input_messages(run))
        ]
        if new:
            stored = await self._sessions.append(run.tenant_id, run.session_id, new)
            self._context.appended(run.tenant_id, run.session_id, stored)

    async def _model_step(
        self,
        run: Run,
        agent: AgentSpec,
        p: _Progress,
        emit: Callable[[RunEvent], None],
        worker: str | None,
    ) -> None:
        budget = agent.context.budget_tokens or self._context_window
        window = await self._context.window(
            run.tenant_id, run.session_id, agent, (), context_window=budget
        )
        specs = self._tools.specs(agent.tools)
        tools: list[ToolDef] | None = [
            {
                "type": "function",
                "function": {
                    "name": s.name,
                    "description": s.description,
                    "parameters": dict(s.parameters),
                },
            }
            for s in specs
        ] or None
        request = ChatRequest(
            model=agent.model,
            messages=window,
            stream=True,
            include_usage=True,
            tools=tools,
            params=agent.params,
            request_id=run.id,
        )
        try:
            answer = await _collect(self._model.stream(request), run.id, emit, p.next_step)
        except WayportError as exc:
            # after the router's own retries and fallbacks: this attempt of the run is over
            raise _ModelFailed(exc.message) from exc
        step_no = p.next_step
        message: Message = {"role": "assistant", "content": answer.text}
        if answer.calls:
            message["tool_calls"] = answer.calls
        payload: Json = {
            "content": answer.text,
            "tool_calls": cast(Json, answer.calls),
            "usage": [answer.usage.prompt_tokens, answer.usage.completion_tokens],
        }
        record = await self._runs.record_step(
            run.tenant_id,
            run.id,
            step_no=step_no,
            kind=StepKind.MODEL,
            payload=payload,
            messages=[NewMessage(message=message, tokens=answer.usage.completion_tokens)],
            idempotency_key=f"{run.id}:{step_no}",
            worker=worker,
        )
        self._context.appended(run.tenant_id, run.session_id, record.messages)
        p.next_step += 1
        p.model_steps += 1
        p.prompt_tokens += answer.usage.prompt_tokens
        p.completion_tokens += answer.usage.completion_tokens
        p.pending = list(answer.calls)
        p.answer = answer.text
        p.answered = not answer.calls

    async def _tool_step(
        self,
        run: Run,
        p: _Progress,
        emit: Callable[[RunEvent], None],
        worker: str | None,
        deadline: float,
    ) -> None:
        call = p.pending[0]
        step_no = p.next_step
        key = f"{run.id}:{step_no}:{call['id']}"
        emit(ToolCalled(run_id=run.id, call=call))
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            result = await self._tools.execute(
                call["function"]["name"],
                call["function"]["arguments"],
                idempotency_key=key,
                timeout=remaining,
            )
        except WayportError as exc:
            # Wayport's own failure around the tool: the model hears of it and carries on.
            result = ToolResult(content=f"tool failed: {exc.message}", is_error=True)
        await self._record_tool(run, step_no, call, result, worker, closing=False)
        emit(ToolReturned(run_id=run.id, call_id=call["id"], result=result))
        p.next_step += 1
        p.tool_calls += 1
        p.pending.pop(0)

    async def _close_pending(
        self, run: Run, p: _Progress, outcome: _Outcome, worker: str | None
    ) -> None:
        """Answer every call left open with an error result (not executed)."""
        reason = f"not executed: {outcome.error or outcome.status.value}"
        for call in p.pending:
            result = ToolResult(content=reason, is_error=True)
            await self._record_tool(run, p.next_step, call, result, worker, closing=True)
            p.next_step += 1
        p.pending = []

    async def _record_tool(
        self,
        run: Run,
        step_no: int,
        call: ToolCall,
        result: ToolResult,
        worker: str | None,
        *,
        closing: bool,
    ) -> None:
        payload: Json = {
            "call_id": call["id"],
            "name": call["function"]["name"],
            "content": result.content,
            "is_error": result.is_error,
            "closing": closing,
        }
        message: Message = {"role": "tool", "tool_call_id": call["id"], "content": result.content}
        record = await self._runs.record_step(
            run.tenant_id,
            run.id,
            step_no=step_no,
            kind=StepKind.TOOL,
            payload=payload,
            messages=[NewMessage(message=message)],
            idempotency_key=f"{run.id}:{step_no}:{call['id']}",
            worker=worker,
        )
        self._context.appended(run.tenant_id, run.session_id, record.messages)


class _ModelFailed(Exception):
    """The model call failed for good; fails the run (store errors propagate instead)."""


def _failed(error: str) -> _Outcome:
    return _Outcome(status=RunStatus.FAILED, error=error)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Answer:
    text: str | None
    calls: list[ToolCall]
    usage: Usage


async def _collect(
    chunks: AsyncIterator[Chunk], run_id: str, emit: Callable[[RunEvent], None], step_no: int
) -> _Answer:
    """Drain one streamed answer, emitting its text as it comes and joining tool-call
    fragments by index."""
    parts: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    usage = Usage()
    try:
        async for chunk in chunks:
            if chunk.content:
                parts.append(chunk.content)
                emit(TextDelta(run_id=run_id, text=chunk.content))
            for delta in chunk.tool_calls or ():
                slot = calls.setdefault(delta["index"], {"id": "", "name": "", "arguments": ""})
                if delta.get("id"):
                    slot["id"] = delta["id"]
                function: dict[str, Any] = dict(delta.get("function") or {})
                slot["name"] += function.get("name") or ""
                slot["arguments"] += function.get("arguments") or ""
            if chunk.usage is not None:
                usage = chunk.usage
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    tool_calls: list[ToolCall] = [
        {
            "id": slot["id"] or f"call_{step_no}_{index}",
            "type": "function",
            "function": {"name": slot["name"], "arguments": slot["arguments"]},
        }
        for index, slot in sorted(calls.items())
    ]
    return _Answer(text="".join(parts) if parts else None, calls=tool_calls, usage=usage)
