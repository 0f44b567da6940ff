"""Response bodies, as msgspec structs: the OpenAI shapes, built from core values and encoded in
one pass. They also generate the response schemas of the OpenAPI document.

    body = encode(chat_completion(completion, id_="chatcmpl-…", created=1700000000, model="m"))
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Iterable, Sequence
from typing import Literal

import msgspec
from msgspec import Struct

from wayport.core.errors import BackendError
from wayport.core.types import Completion, Embeddings, ToolCall, ToolCallDelta, Usage

encode = msgspec.json.Encoder().encode


class UsageBody(Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class FunctionCallOut(Struct, kw_only=True):
    name: str
    arguments: str


class ToolCallOut(Struct, kw_only=True):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class AssistantMessageOut(Struct, kw_only=True, omit_defaults=True):
    # No defaults on fields that must always be sent: ``omit_defaults`` would drop them.
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[ToolCallOut] | None = None


class Choice(Struct, kw_only=True):
    index: int
    message: AssistantMessageOut
    finish_reason: str
    logprobs: None = None


class ChatCompletion(Struct, kw_only=True):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: UsageBody


class FunctionDelta(Struct, kw_only=True, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallDeltaOut(Struct, kw_only=True, omit_defaults=True):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionDelta | None = None


class Delta(Struct, kw_only=True, omit_defaults=True):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDeltaOut] | None = None


class ChunkChoice(Struct, kw_only=True):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(Struct, kw_only=True, omit_defaults=True):
    """One ``data:`` event of a streamed completion. With ``stream_options.include_usage`` the
    last chunk has no choices and carries ``usage``."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageBody | None = None


class ModelCard(Struct, kw_only=True):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "wayport"


class ModelList(Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class EmbeddingItem(Struct, kw_only=True):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(Struct, kw_only=True):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage


class ErrorDetail(Struct, kw_only=True):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(Struct, kw_only=True):
    """Every error, in the OpenAI shape."""

    error: ErrorDetail


class Health(Struct, kw_only=True):
    status: Literal["ok"] = "ok"
    version: str


class ReadinessBody(Struct, kw_only=True):
    status: Literal["ready", "not_ready"]
    not_ready: list[str]  #: deployments that would not serve a request now
    state_ok: bool  #: whether the state directory / store answers


def usage_body(usage: Usage) -> UsageBody:
    return UsageBody(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def _tool_calls(calls: Sequence[ToolCall]) -> list[ToolCallOut]:
    return [
        ToolCallOut(
            id=c["id"],
            function=FunctionCallOut(
                name=c["function"]["name"], arguments=c["function"]["arguments"]
            ),
        )
        for c in calls
    ]


def chat_completion(
    completion: Completion, *, id_: str, created: int, model: str
) -> ChatCompletion:
    message = AssistantMessageOut(
        role="assistant",
        content=completion.content,
        tool_calls=_tool_calls(completion.tool_calls) if completion.tool_calls else None,
    )
    return ChatCompletion(
        id=id_,
        created=created,
        model=model,
        choices=[Choice(index=0, message=message, finish_reason=completion.finish_reason)],
        usage=usage_body(completion.usage),
    )


def tool_call_deltas(deltas: Sequence[ToolCallDelta]) -> list[ToolCallDeltaOut]:
    out = []
    for d in deltas:
        fn = d.get("function")
        out.append(
            ToolCallDeltaOut(
                index=d["index"],
                id=d.get("id"),
                type=d.get("type"),
                function=FunctionDelta(name=fn.get("name"), arguments=fn.get("arguments"))
                if fn is not None
                else None,
            )
        )
    return out


def model_list(names: Iterable[str], *, created: int) -> ModelList:
    return ModelList(data=[ModelCard(id=name, created=created) for name in names])


def embedding_list(embeddings: Embeddings, *, model: str, base64_out: bool) -> EmbeddingList:
    """The vectors in the format the client asked for, whatever the backend returned."""
    vectors: Sequence[Sequence[float] | str] = embeddings.vectors
    data = [
        EmbeddingItem(index=i, embedding=_as_base64(v) if base64_out else _as_floats(v))
        for i, v in enumerate(vectors)
    ]
    prompt = embeddings.usage.prompt_tokens
    return EmbeddingList(
        data=data, model=model, usage=EmbeddingUsage(prompt_tokens=prompt, total_tokens=prompt)
    )


def _as_base64(vector: Sequence[float] | str) -> str:
    if isinstance(vector, str):
        return vector
    # The OpenAI wire format: little-endian float32, base64-encoded.
    try:
        packed = struct.pack(f"<{len(vector)}f", *vector)
    except (struct.error, OverflowError) as exc:
        raise BackendError("The model returned an embedding that is not float32") from exc
    return base64.b64encode(packed).decode("ascii")


def _as_floats(vector: Sequence[float] | str) -> list[float]:
    if not isinstance(vector, str):
        return list(vector)
    try:
        raw = base64.b64decode(vector, validate=True)
    except binascii.Error as exc:
        raise BackendError("The model returned an embedding that is not base64") from exc
    return list(struct.unpack(f"<{len(raw) // 4}f", raw[: len(raw) // 4 * 4]))
