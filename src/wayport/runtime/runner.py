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
hitting one fails the run with an error naming it (an answer cut short is worse than a clear
failure). What the run did so far stays in the history; tool calls left without a result get an
error result first, so the history never holds a call without its answer. Cancelling
(``stop()``) works the same way, at the same safe points between steps.

The loop's parts: its collaborators' protocols (``run_ports``), the run's input and progress
(``run_progress``), collecting a streamed answer (``run_answer``), tool steps (``run_tools``)
and approval decisions (``run_approvals``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import cast

from wayport.core.agent import AgentSpec, RunEvent, RunFinished, TextDelta
from wayport.core.errors import NotFound, WayportError
from wayport.core.session import (
    Checkpoint,
    Json,
    NewMessage,
    NewStep,
    Run,
    RunEnd,
    RunStatus,
    StepKind,
)
from wayport.core.types import ChatRequest, Message, ToolDef
from wayport.ports import RunObserver, RunStore, SessionStore
from wayport.runtime.run_answer import ModelFailed, collect
from wayport.runtime.run_approvals import cancel_requested, unapproved
from wayport.runtime.run_ports import (
    ChatModel,
    ContextWindow,
    Failover,
    Tools,
    Unobserved,
    UsageObserver,
)
from wayport.runtime.run_progress import (
    Outcome,
    Progress,
    failed,
    inbound_of,
    input_messages,
    run_input,
    usage_of,
)
from wayport.runtime.run_tools import ToolSteps, closing_steps

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


def _never() -> bool:
    return False


def _always() -> bool:
    return True


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
        self._observer: RunObserver = observer if observer is not None else Unobserved()
        self._tool_steps = ToolSteps(
            runs=runs, tools=tools, context=context, observer=self._observer
        )

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
        progress = Progress.replay(steps)
        if progress.next_step == 1:
            progress.inbound = inbound_of(run)
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
                halt = _always if cancel_requested(run) else stop  # cancelled while paused
                if self._failover is None:
                    outcome = await self._loop(run, agent, progress, emit, halt, worker, deadline)
                else:
                    outcome = await self._loop_or_failover(
                        run, agent, progress, emit, halt, worker, deadline
                    )
        except TimeoutError:
            outcome = Outcome(status=RunStatus.FAILED, error=f"run_timeout ({limit}s) reached")
        except ModelFailed as exc:
            outcome = failed(f"model failed: {exc}")
        final = progress.final  # the answer's checkpoint ended the run
        if final is None:
            paused = outcome.status is RunStatus.REQUIRES_APPROVAL  # pending calls stay open
            if outcome.status is not RunStatus.COMPLETED and not paused:
                # A step cut off by the timeout may have been committed all the same.
                inbound = progress.inbound
                progress = Progress.replay(await self._runs.steps(run.tenant_id, run.id))
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
        p: Progress,
        emit: Callable[[RunEvent], None],
        stop: Callable[[], bool],
        worker: str | None,
        deadline: float,
    ) -> Outcome:
        """releases: a candidate whose model fails retriably before any text reached the
        client and before any step was recorded runs again on the stable definition."""
        sent = False

        def watched(event: RunEvent) -> None:
            nonlocal sent
            sent = sent or isinstance(event, TextDelta)
            emit(event)

        try:
            return await self._loop(run, agent, p, watched, stop, worker, deadline)
        except ModelFailed as exc:
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
        p: Progress,
        emit: Callable[[RunEvent], None],
        stop: Callable[[], bool],
        worker: str | None,
        deadline: float,
    ) -> Outcome:
        limits = agent.limits
        while True:
            if p.answered:
                return Outcome(status=RunStatus.COMPLETED)
            if stop():
                return Outcome(status=RunStatus.CANCELLED, error="cancelled")
            if p.pending:
                if p.tool_calls >= limits.max_tool_calls:
                    return failed(f"max_tool_calls ({limits.max_tool_calls}) reached")
                waiting = unapproved(self._tools, run, p.pending)
                if waiting:
                    return Outcome(
                        status=RunStatus.REQUIRES_APPROVAL,
                        output={"pending_approval": cast(Json, waiting)},
                    )
                await self._tool_steps.step(run, p, emit, worker, deadline)
                continue
            if p.model_steps >= limits.max_steps:
                return failed(f"max_steps ({limits.max_steps}) reached")
            budget = limits.max_tokens_per_run
            if budget is not None and p.completion_tokens >= budget:
                return failed(f"max_tokens_per_run ({budget}) reached")
            await self._model_step(run, agent, p, emit, worker)

    def _appended(self, run: Run, saved: Checkpoint) -> None:
        stored = [*saved.inbound, *(m for r in saved.steps for m in r.messages)]
        if stored:
            self._context.appended(run.tenant_id, run.session_id, stored)

    async def _model_step(
        self,
        run: Run,
        agent: AgentSpec,
        p: Progress,
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
            answer = await collect(self._model.stream(request), run.id, emit, p.next_step)
        except WayportError as exc:
            # after the router's own retries and fallbacks: this attempt of the run is over
            raise ModelFailed(exc.message) from exc
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

    async def _finish(
        self, run: Run, p: Progress, outcome: Outcome, worker: str | None, *, close: bool
    ) -> Run:
        """End the run with one checkpoint: its input if not stored yet, with ``close`` an
        error result for every call left open (not executed), and the outcome."""
        closing: list[NewStep] = []
        if close:
            reason = f"not executed: {outcome.error or outcome.status.value}"
            closing = closing_steps(run, p, reason)
        done = outcome.status is RunStatus.COMPLETED
        output: Json = p.output({"content": p.answer} if done else outcome.output)
        end = RunEnd(status=outcome.status, output=output, error=outcome.error)
        saved = await self._runs.checkpoint(
            run.tenant_id, run.id, inbound=p.inbound, steps=closing, end=end, worker=worker
        )
        self._appended(run, saved)
        p.inbound = []
        return saved.run
