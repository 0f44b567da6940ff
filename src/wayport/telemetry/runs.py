"""Agent runs watched: run and tool metrics, the console's per-minute counts, and (with a
``Tracing``) the ``invoke_agent {agent}`` and ``execute_tool {tool}`` spans. It is the
``wayport.ports.RunObserver`` the run loop reports to::

    observer = RunTelemetry(metrics=metrics, series=series, tracing=tracing)  # tracing optional
    runner = Runner(..., observer=observer)

Task completion rate is ``completed / finished`` over ``wayport_agent_runs_total``; a call of
the built-in ``escalate`` tool counts in ``wayport_agent_escalations_total``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar

from opentelemetry.trace import Span

from wayport.core.agent import AgentSpec, RunFinished, ToolResult
from wayport.core.session import Run
from wayport.core.types import ToolCall
from wayport.telemetry.metrics import Metrics
from wayport.telemetry.timeseries import Timeseries
from wayport.telemetry.tracing import TENANT_ATTRIBUTE, Tracing

__all__ = ["ESCALATE_TOOL", "RunTelemetry"]

#: The name of the built-in tool an agent calls to hand the conversation to a person.
ESCALATE_TOOL = "escalate"

_agent: ContextVar[AgentSpec | None] = ContextVar("wayport_run_agent", default=None)


class _Watch:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event: RunFinished | None = None

    def first_token(self) -> None:
        pass  # releases time it (``wayport.service.release_signals``)

    def finished(self, event: RunFinished) -> None:
        self.event = event


class RunTelemetry:
    def __init__(
        self, *, metrics: Metrics, series: Timeseries | None = None, tracing: Tracing | None = None
    ) -> None:
        self._metrics = metrics
        self._series = series
        self._tracing = tracing

    @contextmanager
    def run(self, run: Run, agent: AgentSpec) -> Iterator[_Watch]:
        watch = _Watch()
        began = time.perf_counter()
        with ExitStack() as stack:
            token = _agent.set(agent)
            stack.callback(_agent.reset, token)
            self._metrics.run_started(agent.name)  # scale-out: runs in flight here
            stack.callback(self._metrics.run_stopped, agent.name)
            if self._series is not None:
                stack.enter_context(self._series.for_tenant(run.tenant_id))
            span: Span | None = None
            if self._tracing is not None:
                span = stack.enter_context(
                    self._tracing.span(
                        f"invoke_agent {agent.name}",
                        {
                            "gen_ai.operation.name": "invoke_agent",
                            "gen_ai.agent.name": agent.name,
                            "gen_ai.agent.id": agent.name,
                            "gen_ai.agent.version": agent.version,
                            "gen_ai.request.model": agent.model,
                            "gen_ai.conversation.id": run.session_id,
                            "wayport.run.id": run.id,
                            "wayport.run.attempt": run.attempt,
                            TENANT_ATTRIBUTE: run.tenant_id,
                        },
                        bind_logs=True,
                    )
                )
            yield watch
            event = watch.event
            if event is None:
                return
            status = event.run.status.value
            self._metrics.run_finished(agent.name, status, time.perf_counter() - began)
            if self._series is not None:
                self._series.run_finished(run.tenant_id, status)
            if span is not None:
                span.set_attributes(
                    {
                        "wayport.run.status": status,
                        "gen_ai.usage.input_tokens": event.usage.prompt_tokens,
                        "gen_ai.usage.output_tokens": event.usage.completion_tokens,
                    }
                )
                if event.run.error:
                    span.set_attribute("error.type", "run_" + status)
                    span.set_attribute("wayport.run.error", self._redact(event.run.error))

    async def tool(self, run: Run, call: ToolCall, result: Awaitable[ToolResult]) -> ToolResult:
        agent = _agent.get()
        agent_name = agent.name if agent is not None else ""
        name = call["function"]["name"]
        # Label values stay bounded: a name the model made up is counted as "unknown".
        label = name if agent is not None and name in agent.tools else "unknown"
        if label == ESCALATE_TOOL:
            self._metrics.escalation(agent_name)
            if self._series is not None:
                self._series.escalation(run.tenant_id)
        if self._tracing is None:
            done = await result
        else:
            attributes = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": label,
                "gen_ai.tool.call.id": call["id"],
                "gen_ai.tool.type": "function",
                TENANT_ATTRIBUTE: run.tenant_id,
            }
            with self._tracing.span(f"execute_tool {label}", attributes) as span:
                done = await result
                if done.is_error:
                    span.set_attribute("error.type", "tool_error")
        self._metrics.tool_call(agent_name, label, not done.is_error)
        return done

    def _redact(self, text: str) -> str:
        return self._tracing.redact(text) if self._tracing is not None else text
