"""The built-in ``escalate`` tool: an agent calls it to hand the conversation to a person.

Add it to ``wayport.yaml`` and list it in an agent's ``tools``::

    tools:
      escalate:
        type: python
        function: wayport.runtime.tools.escalate:escalate
    agents:
      support:
        tools: [escalate]

Each call counts in ``wayport_agent_escalations_total`` (the human-escalation rate is that over
``wayport_agent_runs_total``) and shows as an ``execute_tool escalate`` span. Routing the
conversation to a person's queue is a channel's business; the tool's answer tells the model
to say that someone will follow up.
"""

from __future__ import annotations

__all__ = ["escalate"]


def escalate(reason: str, urgency: str = "normal") -> str:
    """Hand this conversation to a human operator when you cannot help, the user asks for a
    person, or the request needs a human decision. Say why in one sentence."""
    return (
        f"Escalated to a human operator (urgency: {urgency}). Tell the user that a person "
        "will follow up, and do not try to resolve the request yourself."
    )
