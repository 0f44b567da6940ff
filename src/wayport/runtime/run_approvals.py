"""Tool approval inside the run loop: which pending calls still wait for a decision, and what a
denied call answers. The decisions themselves are stored with the paused run by
``wayport.service.approvals``; the run loop reads them from the run when it resumes.

    waiting = unapproved(tools, run, pending)   # pause the run (requires_approval) if any
    denial(run, call)                           # the error result of a denied call, or None
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wayport.core.agent import ToolResult
from wayport.core.errors import NotFound
from wayport.core.session import Run
from wayport.core.types import ToolCall
from wayport.runtime.run_ports import Tools

__all__ = ["cancel_requested", "decisions", "denial", "requires_approval", "unapproved"]


def unapproved(tools: Tools, run: Run, pending: Sequence[ToolCall]) -> list[ToolCall]:
    """The pending calls of tools marked ``requires_approval`` with no decision yet."""
    decided = decisions(run)
    return [
        c
        for c in pending
        if c["id"] not in decided and requires_approval(tools, c["function"]["name"])
    ]


def requires_approval(tools: Tools, name: str) -> bool:
    try:
        return any(s.requires_approval for s in tools.specs([name]))
    except NotFound:
        return False  # an unknown tool is never executed; the registry says so


def decisions(run: Run) -> dict[str, Any]:
    """The approval decisions ``POST /v1/runs/{id}/approve`` left in the paused run's
    ``output`` (``{"approvals": {call_id: {"approve": bool, "reason": str | None}}}``)."""
    output = run.output
    found = output.get("approvals") if isinstance(output, dict) else None
    return found if isinstance(found, dict) else {}


def denial(run: Run, call: ToolCall) -> ToolResult | None:
    """The error result the model reads for a call the user denied; ``None`` otherwise."""
    decision = decisions(run).get(call["id"])
    if not isinstance(decision, dict) or decision.get("approve") is not False:
        return None
    reason = decision.get("reason")
    why = f": {reason}" if isinstance(reason, str) and reason else ""
    return ToolResult(
        content=f"The user denied this call of {call['function']['name']}{why}", is_error=True
    )


def cancel_requested(run: Run) -> bool:
    """Cancelled while paused for approval: resumed only to close its pending calls."""
    return isinstance(run.output, dict) and run.output.get("cancel") is True
