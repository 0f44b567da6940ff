"""Request bodies of the OpenAI-compatible API, as msgspec structs.

They validate; they do not carry. A request body is decoded once into plain dicts, checked with
``msgspec.convert`` against these structs, and the dicts themselves travel on inside
``ChatRequest`` so that fields Wayport does not know (``logprobs``, vendor extensions …) reach an
OpenAI-compatible upstream unchanged. The same structs generate the OpenAPI schemas, so what the
document promises is exactly what the server enforces::

    raw = decode_object(body)
    checked = check(raw, ChatCompletionBody)   # InvalidRequest naming e.g. messages[0].role
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

from wayport.core.errors import InvalidRequest

_T = TypeVar("_T")

Probability = Annotated[float, Meta(ge=0.0, le=1.0)]
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
PositiveInt = Annotated[int, Meta(ge=1, le=2**31 - 1)]
ModelName = Annotated[str, Meta(min_length=1, max_length=256, description="A public model name.")]
FunctionName = Annotated[str, Meta(min_length=1, max_length=64)]


class ContentPart(Struct, kw_only=True):
    """One part of a multi-part message (``text``, ``image_url``, ``input_audio`` …); the fields
    of each kind pass through to the model unchanged."""

    type: Annotated[str, Meta(min_length=1, max_length=64)]
    text: str | None = None


Content = str | list[ContentPart]


class FunctionCallBody(Struct, kw_only=True):
    name: str
    arguments: str


class ToolCallBody(Struct, kw_only=True):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallBody


class SystemMessage(Struct, kw_only=True, tag_field="role", tag="system"):
    content: Content
    name: str | None = None


class DeveloperMessage(Struct, kw_only=True, tag_field="role", tag="developer"):
    content: Content
    name: str | None = None


class UserMessage(Struct, kw_only=True, tag_field="role", tag="user"):
    content: Content
    name: str | None = None


class AssistantMessage(Struct, kw_only=True, tag_field="role", tag="assistant"):
    content: Content | None = None
    name: str | None = None
    tool_calls: list[ToolCallBody] | None = None
    refusal: str | None = None


class ToolMessage(Struct, kw_only=True, tag_field="role", tag="tool"):
    content: Content
    tool_call_id: str


MessageBody = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage


class FunctionDefinition(Struct, kw_only=True):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolBody(Struct, kw_only=True):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(Struct, kw_only=True):
    name: FunctionName


class ToolChoiceBody(Struct, kw_only=True):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(Struct, kw_only=True):
    include_usage: bool | None = None


class ResponseFormat(Struct, kw_only=True):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class ChatCompletionBody(Struct, kw_only=True):
    """``POST /v1/chat/completions``. Fields not listed here are passed to the model as given."""

    model: ModelName
    messages: Annotated[list[MessageBody], Meta(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    tools: Annotated[list[ToolBody], Meta(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceBody | None = None
    parallel_tool_calls: bool | None = None
    n: Annotated[int, Meta(ge=1, le=1, description="Only one choice is generated.")] | None = None
    temperature: Annotated[float, Meta(ge=0.0, le=2.0)] | None = None
    top_p: Probability | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    stop: str | Annotated[list[str], Meta(max_length=4)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    seed: Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None


TokenInput = str | int | list[int]


class EmbeddingsBody(Struct, kw_only=True):
    """``POST /v1/embeddings``: a string, a list of strings, or token ids (one list, or a list
    of lists)."""

    model: ModelName
    input: str | Annotated[list[TokenInput], Meta(min_length=1, max_length=2048)]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: PositiveInt | None = None
    user: str | None = None


#: ``input`` in the OpenAPI document: msgspec cannot express "a list, all of one kind".
EMBEDDINGS_INPUT_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2048},
        {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2048},
        {
            "type": "array",
            "items": {"type": "array", "items": {"type": "integer"}},
            "minItems": 1,
            "maxItems": 2048,
        },
    ]
}

# Structural fields of a chat body: everything else travels to the model in ``params``.
CHAT_STRUCTURAL_FIELDS = frozenset(
    {"model", "messages", "stream", "stream_options", "tools", "tool_choice", "n"}
)
EMBEDDINGS_STRUCTURAL_FIELDS = frozenset({"model", "input", "encoding_format"})


def _number(text: str) -> float | int:
    # JSON has one number type and JSON Schema calls 3.0 an integer; so does Wayport, so that
    # a client sending ``"max_tokens": 100.0`` is not refused.
    value = float(text)
    return int(value) if value.is_integer() and abs(value) < 2**63 else value


_decode = msgspec.json.Decoder(float_hook=_number).decode
_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")


def decode_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON request body that must be an object."""
    try:
        value = _decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"Invalid JSON body: {exc}", code="invalid_json") from exc
    except RecursionError as exc:
        raise InvalidRequest("Invalid JSON body: nested too deeply", code="invalid_json") from exc
    if not isinstance(value, dict):
        raise InvalidRequest("The request body must be a JSON object", code="invalid_json")
    return value


def check(raw: dict[str, Any], schema: type[_T]) -> _T:
    """Validate ``raw`` against ``schema``; errors name the field path (``messages[0].role``)."""
    try:
        return msgspec.convert(raw, schema)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from exc


def check_embedding_input(value: str | list[TokenInput]) -> None:
    """The one rule msgspec cannot state: a list of inputs is all strings, all token ids, or
    all lists of token ids."""
    if isinstance(value, str):
        return
    kinds = {type(item) for item in value}
    if len(kinds) > 1:
        raise InvalidRequest(
            "input: all items must be strings, all integers, or all lists of integers",
            param="input",
            code="invalid_value",
        )


def _invalid(text: str) -> InvalidRequest:
    path = ""
    at = _AT.search(text)
    if at is not None:
        path = at.group("path")
        text = text[: at.start()]
    missing = _MISSING.search(text)
    if missing is not None:
        path = f"{path}.{missing.group('field')}"
    param = path.lstrip(".") or None
    message = f"{param}: {text}" if param else text
    return InvalidRequest(message, param=param, code="invalid_value")
