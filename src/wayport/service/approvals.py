"""Tool approval: a run paused before a tool marked ``requires_approval`` waits in
``requires_approval`` until a client decides; the decision is stored with the run as it goes
back to the queue, so the worker that resumes it (in this process or after a restart) acts on
it: an approved call is executed, a denied one answered with an error result the model reads.

    run = await approve(runs, "default", run_id, approve=False, reason="not today")
    run.status   # queued: the runner records "The user denied this call …" and carries on

Both writes are one guarded transition (``requires_approval`` to ``queued``): two clients
deciding at once get one success and one ``Conflict``.
"""

from __future__ import annotations

from typing import cast

from wayport.core.errors import Conflict, NotFound
from wayport.core.session import Json, Run, RunStatus
from wayport.ports import RunStore

__all__ = ["approve", "cancel_paused", "pending_calls"]


def pending_calls(run: Run) -> list[dict[str, Json]]:
    """The tool calls a paused run waits on (``output.pending_approval``)."""
    output = run.output
    found = output.get("pending_approval") if isinstance(output, dict) else None
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


async def _get(runs: RunStore, tenant: str, run_id: str) -> Run:
    run = await runs.get(tenant, run_id)
    if run is None:
        raise NotFound(f"The run {run_id!r} does not exist", code="run_not_found")
    return run


async def approve(
    runs: RunStore, tenant: str, run_id: str, *, approve: bool, reason: str | None = None
) -> Run:
    """Decide every call the run waits on and queue it again. Raises ``NotFound`` and
    ``Conflict`` (the run is not waiting for approval, or another decision came first)."""
    run = await _get(runs, tenant, run_id)
    if run.status is not RunStatus.REQUIRES_APPROVAL:
        raise Conflict(
            f"run {run_id} is {run.status.value}, not waiting for approval",
            code="run_not_awaiting_approval",
        )
    calls = pending_calls(run)
    decision: dict[str, Json] = {"approve": approve, "reason": reason}
    output: Json = {
        "pending_approval": cast(Json, calls),
        "approvals": {str(c.get("id")): dict(decision) for c in calls},
    }
    return await runs.transition(
        tenant, run_id, RunStatus.QUEUED, expected=(RunStatus.REQUIRES_APPROVAL,), output=output
    )


async def cancel_paused(runs: RunStore, tenant: str, run: Run) -> Run:
    """Cancel a run waiting for approval: it is queued once more only to answer its pending
    calls with "not executed" (so the history never holds a call without its result) and
    then ends ``cancelled``."""
    output: Json = {"pending_approval": cast(Json, pending_calls(run)), "cancel": True}
    return await runs.transition(
        tenant, run.id, RunStatus.QUEUED, expected=(RunStatus.REQUIRES_APPROVAL,), output=output
    )
