"""What the run loop (``wayport.runtime.runner``) needs of its collaborators: the model router,
the tool registry and the context engine, each as the few calls it makes; and the observer it
uses when none is given."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable

from wayport.core.agent import AgentSpec, RunFinished, ToolResult, ToolSpec
from wayport.core.session import Run, StoredMessage
from wayport.core.types import ChatRequest, Chunk, Message, ToolCall
from wayport.ports import RunWatch

__all__ = ["ChatModel", "ContextWindow", "Failover", "Tools", "Unobserved", "UsageObserver"]


class Tools(Protocol):
    """What the loop needs of the tool registry (``wayport.runtime.tools.ToolRegistry``)."""

    def specs(self, names: Iterable[str]) -> list[ToolSpec]: ...

    async def execute(
        self, name: str, arguments_json: str, *, idempotency_key: str, timeout: float | None
    ) -> ToolResult:
        """Parse, validate and call; a call that cannot run comes back as an error result."""


class ContextWindow(Protocol):
    """What the loop needs of the context engine (``wayport.runtime.context.ContextEngine``)."""

    async def window(
        self,
        tenant: str,
        session_id: str,
        agent: AgentSpec,
        pending: Sequence[Message],
        *,
        context_window: int,
    ) -> list[Message]: ...

    def appended(self, tenant: str, session_id: str, messages: Sequence[StoredMessage]) -> None: ...

    async def maybe_compact(
        self, tenant: str, session_id: str, agent: AgentSpec, *, context_window: int
    ) -> bool: ...


@runtime_checkable
class UsageObserver(Protocol):
    """A context engine that calibrates its token estimate from reported usage
    (``ContextEngine.observed``); the runner reports every model call's prompt tokens."""

    def observed(self, agent: AgentSpec, prompt: Sequence[Message], prompt_tokens: int) -> None: ...


Failover = Callable[[Run, AgentSpec], Awaitable[AgentSpec | None]]


class ChatModel(Protocol):
    """What the loop needs of the model router (``Gateway`` and ``Router`` both fit)."""

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]: ...


class _Unwatched:
    def first_token(self) -> None:
        pass

    def finished(self, event: RunFinished) -> None:
        pass


class Unobserved:
    """The observer when none is given: watches nothing."""

    @contextlib.contextmanager
    def run(self, run: Run, agent: AgentSpec) -> Iterator[RunWatch]:
        yield _Unwatched()

    async def tool(self, run: Run, call: ToolCall, result: Awaitable[ToolResult]) -> ToolResult:
        return await result
