"""Workflow runs and their stored steps, as the store hands them out.

A run moves ``queued -> running -> completed | failed | cancelled``; a running run with nothing
left to do but wait (an approval, a timer, a retry's backoff, a sub-workflow) is parked as
``waiting`` and becomes claimable again when its ``wake_at`` passes or when something outside
resolves a step (which bumps ``revision``). A process that dies holding a run leaves it
``running`` with an old ``heartbeat_at``; the sweep puts it back to ``queued``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from wayport.core.workflow_plan import StepState, StepStatus

__all__ = ["StepRow", "WorkflowRun", "WorkflowStatus", "step_key"]


class WorkflowStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowRun:
    id: str
    tenant_id: str
    workflow: str
    version: str  #: the definition it runs on, to the end
    status: WorkflowStatus
    input: Any = None
    output: Any = None
    error: str | None = None
    trigger: str = "api"  #: api, cron, webhook, channel, workflow
    parent_run_id: str | None = None
    parent_step: str | None = None
    wake_at: float | None = None
    revision: int = 0  #: bumped when a step is resolved from outside (an approval)
    attempt: int = 0  #: claims so far
    claimed_by: str | None = None
    heartbeat_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "workflow.run",
            "workflow": self.workflow,
            "version": self.version,
            "status": self.status.value,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "trigger": self.trigger,
            "parent_run_id": self.parent_run_id,
            "wake_at": self.wake_at,
            "attempt": self.attempt,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRow:
    """One step (or map item) of a run, as checkpointed."""

    path: str  #: the step id, or ``id[i]`` for a map item
    step_id: str
    kind: str
    status: StepStatus
    item_index: int | None = None
    output: Any = None
    error: str | None = None
    attempt: int = 0
    wake_at: float | None = None
    idempotency_key: str | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def state(self) -> StepState:
        return StepState(
            status=self.status,
            output=self.output,
            error=self.error,
            attempt=self.attempt,
            wake_at=self.wake_at,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "step": self.step_id,
            "index": self.item_index,
            "kind": self.kind,
            "status": self.status.value,
            "output": self.output,
            "error": self.error,
            "attempt": self.attempt,
            "wake_at": self.wake_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def step_key(run_id: str, path: str) -> str:
    """The idempotency key of a step: the same for every attempt and every process that runs
    it, so a tool can recognise a repeat."""
    import hashlib

    return "wf-" + hashlib.sha256(f"{run_id}\0{path}".encode()).hexdigest()[:32]
