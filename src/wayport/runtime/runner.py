"""The agent run loop: one run = model call -> tool calls -> model call … until the model
answers or a limit is hit, with every finished step checkpointed in the store.

    runner = Runner(model=gateway, sessions=store.sessions, runs=store.runs,
                    tools=registry, context=engine)
    finished = await runner.execute(run, agent, emit=print)   # run is RUNNING (claimed)
    finished.run.status, finished.run.output                  # completed, {"content": "…"}

**Checkpoints.** Each model answer and each tool result is checkpointed before the next step
begins: the step and the message it adds to the history, in one transaction
(``RunStore.checkpoint``). ``execute`` first replays the recorded steps, so a run resumed after
a crash calls neither a model step nor a tool step that is already recorded; the step in flight
at the crash runs again (at-least-once), and a tool sees the same idempotency key
(``"{run_id}:{step_no}:{call_id}"``) both times. A turn answered without tools costs one
checkpoint: the input, the model step, the answer and the run's end, one commit.

**The inbound message** travels in the run's ``input`` (stored before the client is answered)
and joins the history with the run's first checkpoint, under an idempotency key (until then the
model sees it as pending), so a queued run's message never lands between an earlier run's tool
call and its answer.

**Limits fail the run.** ``max_steps``, ``max_tool_calls`` and ``max_tokens_per_run`` are
checked before each step and ``run_timeout`` bounds the run from its first start
(``Run.started_at``, kept across crashes and resumes; a wait for the client starts it anew);
hitting one fails the run
with an error naming it (an answer cut short is worse than a clear failure). What the run did so
far stays in the history; tool calls left without a result get an error result first, so the
history never holds a call without its answer. Cancelling (``stop()``) works the same way, at
the same safe points between steps. A model that emits broken tool-call JSON gets the
registry's error as the tool result and continues; the tool is not executed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast, runtime_checkable

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
    Checkpoint,
    Json,
    NewMessage,
    NewStep,
    Run,
    RunEnd,
    RunStatus,
    RunStep,
    StepKind,
    StoredMessage,
)
from wayport.core.types import ChatRequest, Chunk, Message, ToolCall, ToolDef, Usage
from wayport.ports import RunObserver, RunStore, RunWatch, SessionStore

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


@runtime_checkable
class UsageObserver(Protocol):
    """A context engine that calibrates its token estimate from reported usage
    (``ContextEngine.observed``); the runner reports every model call's prompt tokens."""

    def observed(self, agent: AgentSpec, prompt: Sequence[Message], prompt_tokens: int) -> None: ...


Failover = Callable[[Run, AgentSpec], Awaitable[AgentSpec | None]]


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
    inbound: list[NewMessage] = field(default_factory=list)  #: the input, not stored yet
    final: Run | None = None  #: the run as the checkpoint that ended it left it
    #: releases: ``{"attempted": candidate, "answered_by": stable}`` after a failover, kept
    #: in the run's output (its ``agent_version`` becomes the stable one that answered)
    failover: dict[str, Json] | None = None

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

    def output(self, output: Json) -> Json:
        """The run's output, with the failover that answered it (releases)."""
        if self.failover is None:
            return output
        return {**(output if isinstance(output, dict) else {}), "failover": self.failover}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Outcome:
    status: RunStatus
    error: str | None = None
    output: Json = None  #: what a paused run shows (the calls awaiting approval)


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
        observer: RunObserver | None = None,
        wall: Callable[[], float] = time.time,
        failover: Failover | None = None,
    ) -> None:
        """``wall``: the wall clock the store stamps runs with (``started_at``), which the
        ``run_timeout`` deadline counts from. ``failover`` (releases): asked for another
        definition when the model fails retriably before the run sent or did anything."""
        self._failover = failover
        self._model = model
        self._wall = wall
        self._sessions = sessions
        self._runs = runs
        self._tools = tools
        self._context = context
        self._context_window = context_window
        self._observe_usage = context.observed if isinstance(context, UsageObserver) else None
        self._observer: RunObserver = observer if observer is not None else _Unobserved()

    async def execute(
        self,
        run: Run,
        agent: AgentSpec,
        *,
        emit: Callable[[RunEvent], None],
        stop: Callable[[], bool] = _never,
        worker: str | None = None,
        fresh: bool = False,
    ) -> RunFinished:
        """``_execute``, watched by the observer (run metrics and the ``invoke_agent`` span).
        ``fresh``: the run was created claimed a moment ago and has no steps to read back."""
        with self._observer.run(run, agent) as watch:
            first = True

            def emitting(event: RunEvent) -> None:
                nonlocal first
                if first and isinstance(event, TextDelta):  # time to first token
                    first = False
                    watch.first_token()
                emit(event)

            event = await self._execute(
                run, agent, emit=emitting, stop=stop, worker=worker, fresh=fresh
            )
            watch.finished(event)
        return event

    async def _execute(
        self,
        run: Run,
        agent: AgentSpec,
        *,
        emit: Callable[[RunEvent], None],
        stop: Callable[[], bool] = _never,
        worker: str | None = None,
        fresh: bool = False,
    ) -> RunFinished:
        """Carry ``run`` (``RUNNING``, claimed by ``worker``) to a finished status and return
        its last event (also emitted). Raises ``Conflict`` when the run was taken away (its
        claim lost) and ``StoreError`` when the store fails; the run then stays unfinished,
        for a later attempt."""
        steps = () if fresh else await self._runs.steps(run.tenant_id, run.id)
        progress = _Progress.replay(steps)
        if progress.next_step == 1:
            progress.inbound = _inbound(run)
        limit = agent.limits.run_timeout
        if run.started_at is None:
            # the first start, kept in the run: a resumed run keeps its deadline
            run = (
                await self._runs.checkpoint(
                    run.tenant_id, run.id, started_at=self._wall(), worker=worker
                )
            ).run
        began = run.started_at if run.started_at is not None else self._wall()
        left = began + limit - self._wall()
        deadline = asyncio.get_running_loop().time() + left
        try:
            if left <= 0:
                raise TimeoutError  # spent before a crash: no step starts
            async with asyncio.timeout_at(deadline):
                halt = _always if _cancel_requested(run) else stop  # cancelled while paused
                if self._failover is None:
                    outcome = await self._loop(run, agent, progress, emit, halt, worker, deadline)
                else:
                    outcome = await self._loop_or_failover(
                        run, agent, progress, emit, halt, worker, deadline
                    )
        except TimeoutError:
            outcome = _Outcome(status=RunStatus.FAILED, error=f"run_timeout ({limit}s) reached")
        except _ModelFailed as exc:
            outcome = _failed(f"model failed: {exc}")
        final = progress.final  # the answer's checkpoint ended the run
        if final is None:
            paused = outcome.status is RunStatus.REQUIRES_APPROVAL  # pending calls stay open
            if outcome.status is not RunStatus.COMPLETED and not paused:
                # A step cut off by the timeout may have been committed all the same.
                inbound = progress.inbound
                progress = _Progress.replay(await self._runs.steps(run.tenant_id, run.id))
                progress.inbound = inbound if progress.next_step == 1 else []
                final = await self._finish(run, progress, outcome, worker, close=True)
            else:
                final = await self._finish(run, progress, outcome, worker, close=False)
        event = RunFinished(run=final, usage=progress.usage)
        emit(event)
        if final.status is RunStatus.COMPLETED:
            await self._compact(run, agent)
        return event

    async def _loop_or_failover(
        self,
        run: Run,
        agent: AgentSpec,
        p: _Progress,
        emit: Callable[[RunEvent], None],
        stop: Callable[[], bool],
        worker: str | None,
        deadline: float,
    ) -> _Outcome:
        """releases: a candidate whose model fails retriably before any text reached the
        client and before any step was recorded runs again on the stable definition."""
        sent = False

        def watched(event: RunEvent) -> None:
            nonlocal sent
            sent = sent or isinstance(event, TextDelta)
            emit(event)

        try:
            return await self._loop(run, agent, p, watched, stop, worker, deadline)
        except _ModelFailed as exc:
            cause = exc.__cause__
            retriable = isinstance(cause, WayportError) and cause.retriable
            if sent or p.model_steps or p.tool_calls or not retriable or self._failover is None:
                raise
            stable = await self._failover(run, agent)
            if stable is None:
                raise
            p.failover = {"attempted": agent.version, "answered_by": stable.version}
            # stored: a run resumed later (after an approval, a restart) goes on on stable
            run = await self._runs.set_agent_version(
                run.tenant_id, run.id, stable.version, worker=worker
            )
            return await self._loop(run, stable, p, emit, stop, worker, deadline)

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
                waiting = self._unapproved(run, p.pending)
                if waiting:
                    return _Outcome(
                        status=RunStatus.REQUIRES_APPROVAL,
                        output={"pending_approval": cast(Json, waiting)},
                    )
                await self._tool_step(run, p, emit, worker, deadline)
                continue
            if p.model_steps >= limits.max_steps:
                return _failed(f"max_steps ({limits.max_steps}) reached")
            budget = limits.max_tokens_per_run
            if budget is not None and p.completion_tokens >= budget:
                return _failed(f"max_tokens_per_run ({budget}) reached")
            await self._model_step(run, agent, p, emit, worker)

    def _appended(self, run: Run, saved: Checkpoint) -> None:
        stored = [*saved.inbound, *(m for r in saved.steps for m in r.messages)]
        if stored:
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
        # the input joins the history with this step's checkpoint; until then it is pending
        unsent = [m.message for m in p.inbound]
        window = await self._context.window(
            run.tenant_id, run.session_id, agent, unsent, context_window=budget
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
        if self._observe_usage is not None:
            self._observe_usage(agent, window, answer.usage.prompt_tokens)
        step_no = p.next_step
        message: Message = {"role": "assistant", "content": answer.text}
        if answer.calls:
            message["tool_calls"] = answer.calls
        payload: Json = {
            "content": answer.text,
            "tool_calls": cast(Json, answer.calls),
            "usage": [answer.usage.prompt_tokens, answer.usage.completion_tokens],
        }
        step = NewStep(
            step_no=step_no,
            kind=StepKind.MODEL,
            payload=payload,
            messages=[NewMessage(message=message, tokens=answer.usage.completion_tokens)],
            idempotency_key=f"{run.id}:{step_no}",
        )
        # an answer without tool calls ends the run in the same transaction (one commit)
        end = None
        if not answer.calls:
            end = RunEnd(status=RunStatus.COMPLETED, output=p.output({"content": answer.text}))
        saved = await self._runs.checkpoint(
            run.tenant_id, run.id, inbound=p.inbound, steps=[step], end=end, worker=worker
        )
        self._appended(run, saved)
        p.inbound = []
        if end is not None:
            p.final = saved.run
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
        denied = _denial(run, call)
        if denied is None and _shadow(run) and self._side_effects(call["function"]["name"]):
            denied = ToolResult(content="skipped in shadow")  # releases: a mirrored run
        if denied is not None:  # the user said no: the model hears why, nothing runs
            await self._record_tool(run, step_no, call, denied, worker, closing=False)
            emit(ToolReturned(run_id=run.id, call_id=call["id"], result=denied))
            p.next_step += 1
            p.tool_calls += 1
            p.pending.pop(0)
            return
        try:
            result = await self._observer.tool(
                run,
                call,
                self._tools.execute(
                    call["function"]["name"],
                    call["function"]["arguments"],
                    idempotency_key=key,
                    timeout=remaining,
                ),
            )
        except WayportError as exc:
            # Wayport's own failure around the tool: the model hears of it and carries on.
            result = ToolResult(content=f"tool failed: {exc.message}", is_error=True)
        await self._record_tool(run, step_no, call, result, worker, closing=False)
        emit(ToolReturned(run_id=run.id, call_id=call["id"], result=result))
        p.next_step += 1
        p.tool_calls += 1
        p.pending.pop(0)

    def _unapproved(self, run: Run, pending: Sequence[ToolCall]) -> list[ToolCall]:
        """The pending calls of tools marked ``requires_approval`` with no decision yet."""
        decided = _decisions(run)
        return [
            c
            for c in pending
            if c["id"] not in decided and self._requires_approval(c["function"]["name"])
        ]

    def _side_effects(self, name: str) -> bool:
        try:
            return any(s.side_effects for s in self._tools.specs([name]))
        except NotFound:
            return False

    def _requires_approval(self, name: str) -> bool:
        try:
            return any(s.requires_approval for s in self._tools.specs([name]))
        except NotFound:
            return False  # an unknown tool is never executed; the registry says so

    async def _finish(
        self, run: Run, p: _Progress, outcome: _Outcome, worker: str | None, *, close: bool
    ) -> Run:
        """End the run with one checkpoint: its input if not stored yet, with ``close`` an
        error result for every call left open (not executed), and the outcome."""
        closing: list[NewStep] = []
        if close:
            reason = f"not executed: {outcome.error or outcome.status.value}"
            for call in p.pending:
                result = ToolResult(content=reason, is_error=True)
                closing.append(_tool_step(run, p.next_step, call, result, closing=True))
                p.next_step += 1
            p.pending = []
        done = outcome.status is RunStatus.COMPLETED
        output: Json = p.output({"content": p.answer} if done else outcome.output)
        end = RunEnd(status=outcome.status, output=output, error=outcome.error)
        saved = await self._runs.checkpoint(
            run.tenant_id, run.id, inbound=p.inbound, steps=closing, end=end, worker=worker
        )
        self._appended(run, saved)
        p.inbound = []
        return saved.run

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


class _Unwatched:
    def first_token(self) -> None:
        pass

    def finished(self, event: RunFinished) -> None:
        pass


class _Unobserved:
    """The observer when none is given: watches nothing."""

    @contextlib.contextmanager
    def run(self, run: Run, agent: AgentSpec) -> Iterator[RunWatch]:
        yield _Unwatched()

    async def tool(self, run: Run, call: ToolCall, result: Awaitable[ToolResult]) -> ToolResult:
        return await result


def _always() -> bool:
    return True


def _decisions(run: Run) -> dict[str, Any]:
    """The approval decisions ``POST /v1/runs/{id}/approve`` left in the paused run's
    ``output`` (``{"approvals": {call_id: {"approve": bool, "reason": str | None}}}``)."""
    output = run.output
    found = output.get("approvals") if isinstance(output, dict) else None
    return found if isinstance(found, dict) else {}


def _denial(run: Run, call: ToolCall) -> ToolResult | None:
    decision = _decisions(run).get(call["id"])
    if not isinstance(decision, dict) or decision.get("approve") is not False:
        return None
    reason = decision.get("reason")
    why = f": {reason}" if isinstance(reason, str) and reason else ""
    return ToolResult(
        content=f"The user denied this call of {call['function']['name']}{why}", is_error=True
    )


def _shadow(run: Run) -> bool:
    """releases: a run mirrored to a candidate (its answer is never sent)."""
    return isinstance(run.input, dict) and run.input.get("shadow") is True


def _cancel_requested(run: Run) -> bool:
    """Cancelled while paused for approval: resumed only to close its pending calls."""
    return isinstance(run.output, dict) and run.output.get("cancel") is True


def _inbound(run: Run) -> list[NewMessage]:
    """The run's input as the messages it adds to its session, keyed so a retry adds none."""
    return [
        NewMessage(message=m, idempotency_key=f"{run.id}:in:{i}")
        for i, m in enumerate(input_messages(run))
    ]


def _tool_step(
    run: Run, step_no: int, call: ToolCall, result: ToolResult, *, closing: bool
) -> NewStep:
    payload: Json = {
        "call_id": call["id"],
        "name": call["function"]["name"],
        "content": result.content,
        "is_error": result.is_error,
        "closing": closing,
    }
    message: Message = {"role": "tool", "tool_call_id": call["id"], "content": result.content}
    return NewStep(
        step_no=step_no,
        kind=StepKind.TOOL,
        payload=payload,
        messages=[NewMessage(message=message)],
        idempotency_key=f"{run.id}:{step_no}:{call['id']}",
    )


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
