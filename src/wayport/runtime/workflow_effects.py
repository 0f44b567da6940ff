"""What effect steps call, and how: a tool through the tool registry (with the step's
idempotency key), a prompt through the model gateway, an agent turn through the agent service.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from wayport.core.agent import ToolResult
from wayport.core.types import ChatRequest, Completion, Message
from wayport.core.workflow import StepKind
from wayport.core.workflow_plan import Execute
from wayport.core.workflow_run import WorkflowRun

__all__ = ["AgentCall", "Effects", "StepFailed", "Tools", "run_effect"]


class StepFailed(Exception):
    """An attempt of a step failed; the retry policy decides what happens next."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentCall:
    tenant: str
    run_id: str
    path: str
    agent: str
    input: Any
    idempotency_key: str


class Tools(Protocol):
    async def execute(
        self,
        name: str,
        arguments_json: str,
        *,
        idempotency_key: str,
        timeout: float | None = None,
    ) -> ToolResult: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Effects:
    """What effect steps call: the model gateway, the tool registry, the agent service."""

    llm: Callable[[ChatRequest], Awaitable[Completion]] | None = None
    tools: Tools | None = None
    agent: Callable[[AgentCall], Awaitable[Any]] | None = None


async def run_effect(effects: Effects, run: WorkflowRun, ex: Execute, key: str) -> Any:
    """One attempt of an ``llm``, ``tool`` or ``agent`` step; raises ``StepFailed`` (or a
    ``WayportError``) when it fails."""
    params = ex.params
    kind = ex.step.kind
    if kind is StepKind.TOOL:
        if effects.tools is None:
            raise StepFailed("no tools are configured")
        args = params.get("args") or {}
        result = await effects.tools.execute(
            str(params["name"]),
            json.dumps(args),
            idempotency_key=key,
            timeout=ex.step.timeout,
        )
        if result.is_error:
            raise StepFailed(result.content)
        return _decoded(result.content)
    if kind is StepKind.LLM:
        if effects.llm is None:
            raise StepFailed("no models are configured")
        messages: list[Message] = []
        if params.get("system"):
            messages.append({"role": "system", "content": str(params["system"])})
        messages.append({"role": "user", "content": _as_text(params["prompt"])})
        extra = {k: params[k] for k in ("max_tokens", "temperature") if k in params}
        answer = await effects.llm(
            ChatRequest(model=str(params["model"]), messages=messages, params=extra)
        )
        text = (answer.content or "").strip()
        if params.get("format") == "json":
            try:
                return json.loads(text)
            except ValueError as exc:
                raise StepFailed(f"the model's answer is not JSON: {exc}") from exc
        return text
    if effects.agent is None:
        raise StepFailed("no agents are configured")
    call = AgentCall(
        tenant=run.tenant_id,
        run_id=run.id,
        path=ex.path,
        agent=str(params["agent"]),
        input=params["input"],
        idempotency_key=key,
    )
    return await effects.agent(call)


def _decoded(content: str) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return content


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
