"""Workflow runs as traces: the ``wayport.ports.WorkflowObserver`` that turns a run into a
``workflow {name}`` span and each of its steps into a ``workflow.step {path}`` child::

    observer = WorkflowTracing(tracing)
    service = WorkflowService(..., observer=observer)

A run span covers the part of the run one process drove: it opens at the run's first step
here and ends when the run finishes. A run resumed by another process (after a crash, or on
another replica) gets a run span there too; both carry ``wayport.workflow.run.id``. Steps the
scheduler settles without executing (a skipped branch, a finished wait) are zero-length spans.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from wayport.core.workflow_run import WorkflowRun
from wayport.telemetry.tracing import TENANT_ATTRIBUTE, Tracing

__all__ = ["WorkflowTracing"]

_FAILED = ("failed", "cancelled")
_NEW_TRACE = trace.set_span_in_context(trace.INVALID_SPAN)


class WorkflowTracing:
    """Spans per workflow run and per step. ``keep``: the most runs with an open span; a
    process that lost a run to another replica never hears of its end, so the oldest are
    ended (status unset) beyond that."""

    def __init__(self, tracing: Tracing, *, keep: int = 10_000) -> None:
        self._tracing = tracing
        self._keep = keep
        self._runs: OrderedDict[str, Span] = OrderedDict()
        self._steps: dict[tuple[str, str], Span] = {}

    def _run_span(self, run: WorkflowRun) -> Span:
        span = self._runs.get(run.id)
        if span is None:
            span = self._tracing.start_detached(
                f"workflow {run.workflow}",
                {
                    "wayport.workflow.name": run.workflow,
                    "wayport.workflow.version": run.version,
                    "wayport.workflow.run.id": run.id,
                    "wayport.workflow.trigger": run.trigger,
                    TENANT_ATTRIBUTE: run.tenant_id,
                },
                context=_NEW_TRACE,  # a trace of its own
            )
            self._runs[run.id] = span
            while len(self._runs) > self._keep:
                stale_id, stale = self._runs.popitem(last=False)
                self._end_steps(stale_id)
                stale.end()
        return span

    def _step_span(
        self, run: WorkflowRun, path: str, kind: str, attempt: int, start: int | None = None
    ) -> Span:
        parent = trace.set_span_in_context(self._run_span(run))
        step_id = path.partition("[")[0]
        return self._tracing.start_detached(
            f"workflow.step {path}",
            {
                "wayport.workflow.name": run.workflow,
                "wayport.workflow.version": run.version,
                "wayport.workflow.run.id": run.id,
                "wayport.workflow.step.id": step_id,
                "wayport.workflow.step.path": path,
                "wayport.workflow.step.kind": kind,
                "wayport.workflow.step.attempt": attempt,
                TENANT_ATTRIBUTE: run.tenant_id,
            },
            context=parent,
            start_time=start,
        )

    def step_started(self, run: WorkflowRun, path: str, kind: str, attempt: int) -> None:
        key = (run.id, path)
        previous = self._steps.pop(key, None)
        if previous is not None:  # an attempt that never reported back
            previous.end()
        self._steps[key] = self._step_span(run, path, kind, attempt)

    def step_finished(
        self,
        run: WorkflowRun,
        path: str,
        kind: str,
        status: str,
        seconds: float,
        error: str | None,
    ) -> None:
        span = self._steps.pop((run.id, path), None)
        if span is None:
            span = self._step_span(run, path, kind, 0, start=time.time_ns())
        span.set_attribute("wayport.workflow.step.status", status)
        if error is not None and status in (*_FAILED, "retry"):
            span.set_attribute("error.type", "workflow_step_" + status)
            span.set_status(Status(StatusCode.ERROR, self._tracing.redact(error)[:500]))
        span.end()

    def run_finished(self, run: WorkflowRun) -> None:
        span = self._run_span(run)
        del self._runs[run.id]
        self._end_steps(run.id)
        span.set_attribute("wayport.workflow.status", run.status.value)
        if run.status.value in _FAILED:
            span.set_attribute("error.type", "workflow_" + run.status.value)
            span.set_status(Status(StatusCode.ERROR, self._tracing.redact(run.error or "")[:500]))
        span.end()

    def _end_steps(self, run_id: str) -> None:
        for key in [k for k in self._steps if k[0] == run_id]:
            self._steps.pop(key).end()
