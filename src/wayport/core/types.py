"""The core contract: the typed values every engine speaks.

The OpenAI chat format is the lingua franca. Messages are ``TypedDict``s (zero cost at run
time, checked by mypy); everything Wayport builds itself is a frozen, slotted dataclass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

Role = Literal["system", "developer", "user", "assistant", "tool"]


class FunctionCall(TypedDict):
    name: str
    arguments: str


class ToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCall


class Message(TypedDict):
    """One chat message in OpenAI shape. ``content`` may be text or a list of parts."""

    role: Role
    content: NotRequired[str | list[dict[str, Any]] | None]
    name: NotRequired[str]
    tool_calls: NotRequired[list[ToolCall]]
    tool_call_id: NotRequired[str]


class ToolFunction(TypedDict):
    name: str
    description: NotRequired[str]
    parameters: NotRequired[dict[str, Any]]


class ToolDef(TypedDict):
    type: Literal["function"]
    function: ToolFunction


class ToolCallDelta(TypedDict):
    """A streamed fragment of a tool call (OpenAI ``delta.tool_calls[i]``)."""

    index: int
    id: NotRequired[str]
    type: NotRequired[Literal["function"]]
    function: NotRequired[dict[str, str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRequest:
    """A chat completion asked of a model group.

    ``params`` holds the generation parameters exactly as the client sent them
    (``temperature``, ``max_tokens``, ``stop``, ``response_format`` …) so that an
    OpenAI-compatible upstream receives them unchanged.
    """

    model: str
    messages: Sequence[Message]
    stream: bool = False
    include_usage: bool = False
    tools: Sequence[ToolDef] | None = None
    tool_choice: str | Mapping[str, Any] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    request_id: str = ""

    def param(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """A whole (non-streamed) answer from a backend."""

    content: str | None
    tool_calls: Sequence[ToolCall] | None = None
    finish_reason: str = "stop"
    usage: Usage = Usage()
    model: str = ""

    def message(self) -> Message:
        msg: Message = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = list(self.tool_calls)
        return msg


@dataclass(frozen=True, slots=True, kw_only=True)
class Chunk:
    """One streamed piece of an answer. The last chunk of a stream carries ``finish_reason``;
    ``usage`` arrives on whichever chunk the backend reports it (usually the last)."""

    content: str | None = None
    tool_calls: Sequence[ToolCallDelta] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    role: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddingRequest:
    model: str
    input: Sequence[str] | Sequence[Sequence[int]] | str
    params: Mapping[str, Any] = field(default_factory=dict)
    request_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Embeddings:
    vectors: Sequence[Sequence[float]] | Sequence[str]
    usage: Usage = Usage()
    model: str = ""
