"""A run's tool steps: the first pending tool call is executed through the registry (watched by
the observer, bounded by what is left of the run's deadline) and its result recorded as one
step, before the next step begins.

    steps = ToolSteps(runs=store.runs, tools=registry, context=engine, observer=observer)
    await steps.step(run, progress, emit, worker, deadline)   # progress.pending[0] answered

A call the user denied is answered with the denial, and in a shadow run (releases) a call of a
tool with side effects with "skipped in shadow"; neither runs. A tool sees the idempotency key
``"{run_id}:{step_no}:{call_id}"``, the same again when a crash makes the step run twice. A
call whose arguments are broken JSON is answered with the registry's error; nothing runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from wayport.core.agent import RunEvent, ToolCalled, ToolResult, ToolReturned
from wayport.core.errors import NotFound, WayportError
from wayport.core.session import Json, NewMessage, NewStep, Run, StepKind
from wayport.core.types import Message, ToolCall
from wayport.ports import RunObserver, RunStore
from wayport.runtime.run_approvals import denial
from wayport.runtime.run_ports import ContextWindow, Tools
from wayport.runtime.run_progress import Progress

__all__ = ["ToolSteps", "closing_steps", "shadow"]


class ToolSteps:
    """Executes and records tool steps; holds no per-run state."""

    def __init__(
        self, *, runs: RunStore, tools: Tools, context: ContextWindow, observer: RunObserver
    ) -> None:
        self._runs = runs
        self._tools = tools
        self._context = context
        self._observer = observer

    async def step(
        self,
        run: Run,
        p: Progress,
        emit: Callable[[RunEvent], None],
        worker: str | None,
        deadline: float,
    ) -> None:
        """Answer ``p.pending[0]`` with one recorded step and carry ``p`` past it."""
        call = p.pending[0]
        step_no = p.next_step
        key = f"{run.id}:{step_no}:{call['id']}"
        emit(ToolCalled(run_id=run.id, call=call))
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        denied = denial(run, call)
        if denied is None and shadow(run) and self._side_effects(call["function"]["name"]):
            denied = ToolResult(content="skipped in shadow")  # releases: a mirrored run
        if denied is not None:  # the user said no: the model hears why, nothing runs
            await self._record(run, step_no, call, denied, worker, closing=False)
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
        await self._record(run, step_no, call, result, worker, closing=False)
        emit(ToolReturned(run_id=run.id, call_id=call["id"], result=result))
        p.next_step += 1
        p.tool_calls += 1
        p.pending.pop(0)

    def _side_effects(self, name: str) -> bool:
        try:
            return any(s.side_effects for s in self._tools.specs([name]))
        except NotFound:
            return False

    async def _record(
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


def shadow(run: Run) -> bool:
    """releases: a run mirrored to a candidate (its answer is never sent)."""
    return isinstance(run.input, dict) and run.input.get("shadow") is True


def closing_steps(run: Run, p: Progress, reason: str) -> list[NewStep]:
    """An error result for every call ``p`` leaves open (not executed), as steps to checkpoint
    with the run's end; ``p`` moves past them."""
    closing: list[NewStep] = []
    for call in p.pending:
        result = ToolResult(content=reason, is_error=True)
        closing.append(_tool_step(run, p.next_step, call, result, closing=True))
        p.next_step += 1
    p.pending = []
    return closing


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
