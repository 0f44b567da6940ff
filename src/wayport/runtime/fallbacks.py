"""Minimal stand-ins for the real engines, for tests and experiments that want none of their
machinery (schemas, caching, compaction): a tool registry over plain Python callables and a
context window of the newest stored messages. The product wires
``wayport.runtime.tools.ToolRegistry`` and ``wayport.runtime.context.ContextEngine``; these
take the same calls (the runner's ``Tools`` and ``ContextWindow``)::

    async def add(arguments: Mapping[str, Any]) -> str:
        return str(arguments["a"] + arguments["b"])

    tools = FunctionTools({"add": (ToolSpec(name="add", parameters=SCHEMA), add)})
    context = RecentHistory(sessions, max_messages=50)
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from wayport.core.agent import AgentSpec, ToolResult, ToolSpec
from wayport.core.session import StoredMessage
from wayport.core.types import Message
from wayport.ports import SessionStore

ToolFunction = Callable[[Mapping[str, Any]], Awaitable[str]]


class FunctionTools:
    """Tools as ``name -> (spec, async function)``. Checks only that the arguments are a JSON
    object holding the schema's ``required`` keys (the real registry validates fully)."""

    def __init__(self, tools: Mapping[str, tuple[ToolSpec, ToolFunction]] | None = None) -> None:
        self._tools = dict(tools or {})
        self.calls: list[tuple[str, str]] = []  #: (name, idempotency key) of executed calls

    def specs(self, names: Iterable[str]) -> list[ToolSpec]:
        return [self._tools[n][0] for n in names if n in self._tools]

    async def execute(
        self, name: str, arguments_json: str, *, idempotency_key: str, timeout: float | None
    ) -> ToolResult:
        found = self._tools.get(name)
        if found is None:
            return ToolResult(content=f"unknown tool {name!r}", is_error=True)
        spec, function = found
        try:
            arguments = json.loads(arguments_json or "{}")
        except json.JSONDecodeError as exc:
            return ToolResult(content=f"arguments are not valid JSON: {exc}", is_error=True)
        if not isinstance(arguments, dict):
            return ToolResult(content="arguments must be a JSON object", is_error=True)
        missing = [k for k in spec.parameters.get("required", ()) if k not in arguments]
        if missing:
            return ToolResult(content=f"missing required arguments: {missing}", is_error=True)
        self.calls.append((name, idempotency_key))
        return ToolResult(content=await function(arguments))


class RecentHistory:
    """The agent's instructions, then the newest ``max_messages`` stored messages (never
    starting with a tool result cut off from its call)."""

    def __init__(self, sessions: SessionStore, *, max_messages: int = 64) -> None:
        self._sessions = sessions
        self._max = max_messages

    async def window(
        self,
        tenant: str,
        session_id: str,
        agent: AgentSpec,
        pending: Sequence[Message],
        *,
        context_window: int,
    ) -> list[Message]:
        session = await self._sessions.get(tenant, session_id)
        count = session.message_count if session is not None else 0
        stored = await self._sessions.history(
            tenant, session_id, after=max(0, count - self._max), limit=self._max
        )
        messages = [m.to_message() for m in stored]
        while messages and messages[0]["role"] == "tool":
            messages.pop(0)
        head: list[Message] = (
            [{"role": "system", "content": agent.instructions}] if agent.instructions else []
        )
        return [*head, *messages, *pending]

    def appended(self, tenant: str, session_id: str, messages: Sequence[StoredMessage]) -> None:
        """Nothing cached, nothing to update."""

    async def maybe_compact(
        self, tenant: str, session_id: str, agent: AgentSpec, *, context_window: int
    ) -> bool:
        """Never compacts: the window is cut by message count instead."""
        return False
