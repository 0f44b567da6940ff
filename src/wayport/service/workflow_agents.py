"""``agent`` workflow steps, run through the agent service."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from wayport.core.errors import Conflict, NotFound
from wayport.runtime.workflow_effects import AgentCall, StepFailed
from wayport.service.agents import AgentService

__all__ = ["agent_effect"]


def agent_effect(agents: AgentService) -> Callable[[AgentCall], Awaitable[Any]]:
    """``agent`` steps: one session per workflow run and agent; the step's idempotency key
    makes a repeated step find the agent run it started instead of starting another. The
    step's output is the agent's answer."""

    async def run(call: AgentCall) -> Any:
        digest = hashlib.sha256(f"{call.run_id}\0{call.agent}".encode()).hexdigest()
        session_id = f"wfs-{digest[:24]}"
        try:
            await agents.session(session_id, tenant=call.tenant)
        except NotFound:
            with contextlib.suppress(Conflict):  # another attempt created it meanwhile
                await agents.create_session(
                    call.agent,
                    session_id=session_id,
                    metadata={"workflow_run": call.run_id},
                    tenant=call.tenant,
                )
        text = call.input if isinstance(call.input, str) else msgspec.json.encode(call.input)
        content = text if isinstance(text, str) else text.decode()
        submitted = await agents.submit(
            session_id,
            [{"role": "user", "content": content}],
            idempotency_key=call.idempotency_key,
            tenant=call.tenant,
        )
        done = await agents.finished(submitted.id, tenant=call.tenant)
        output = done.run.output
        if done.run.status.value != "completed":
            raise StepFailed(f"agent run {submitted.id} {done.run.status.value}: {done.run.error}")
        if isinstance(output, dict) and "content" in output:
            return output["content"]
        return output

    return run
