"""The OpenAI Responses API on the wire: the request body it validates, the conversion of its
input items to chat messages, and the ``response`` object and stream events it answers with.

    raw = decode_object(body)
    checked = check(normalise(raw), ResponsesBody)       # errors name e.g. input[1].call_id
    messages = to_messages(checked.input)                # chat messages, tool turns included

Input items without ``type`` (``{"role": "user", "content": "hi"}``, the "easy" form) are
messages; ``normalise`` tags them so one tagged union validates every kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from wayport.core.types import Message, ToolCall, ToolDef, ToolFunction, Usage
from wayport.server.wire import FunctionName, ModelName, PositiveInt, Probability


class InputText(Struct, kw_only=True, tag_field="type", tag="input_text"):
    text: str


class OutputText(Struct, kw_only=True, tag_field="type", tag="output_text"):
    text: str


class MessageItem(Struct, kw_only=True, tag_field="type", tag="message"):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputText | OutputText]


class FunctionCallItem(Struct, kw_only=True, tag_field="type", tag="function_call"):
    call_id: Annotated[str, Meta(min_length=1)]
    name: FunctionName
    arguments: str


class FunctionCallOutputItem(Struct, kw_only=True, tag_field="type", tag="function_call_output"):
    call_id: Annotated[str, Meta(min_length=1)]
    output: str


InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem


class FunctionTool(Struct, kw_only=True, tag_field="type", tag="function"):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ConversationRef(Struct, kw_only=True):
    id: Annotated[str, Meta(min_length=1)]


class ResponsesBody(Struct, kw_only=True):
    model: ModelName
    input: Annotated[str, Meta(min_length=1)] | Annotated[list[InputItem], Meta(min_length=1)]
    instructions: str | None = None
    previous_response_id: Annotated[str, Meta(min_length=1)] | None = None
    conversation: Annotated[str, Meta(min_length=1)] | ConversationRef | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    stream: bool = False
    store: bool = True
    max_output_tokens: PositiveInt | None = None
    temperature: Annotated[float, Meta(ge=0.0, le=2.0)] | None = None
    top_p: Probability | None = None


def normalise(raw: dict[str, Any]) -> dict[str, Any]:
    """Tag the easy-form messages of ``input`` (no ``type``) as ``message`` items."""
    items = raw.get("input")
    if isinstance(items, list):
        raw["input"] = [
            {**item, "type": "message"} if isinstance(item, dict) and "type" not in item else item
            for item in items
        ]
    return raw


def to_messages(given: str | Sequence[InputItem]) -> list[Message]:
    """Chat messages for the input; consecutive ``function_call`` items become one assistant
    message with several tool calls, as chat models expect them."""
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    out: list[Message] = []
    for item in given:
        if isinstance(item, MessageItem):
            content = item.content
            text = content if isinstance(content, str) else "".join(p.text for p in content)
            out.append({"role": item.role, "content": text})
        elif isinstance(item, FunctionCallItem):
            call: ToolCall = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and last.get("tool_calls"):
                last["tool_calls"] = [*last.get("tool_calls", []), call]
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        else:
            out.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output})
    return out


def to_tool_defs(tools: Sequence[FunctionTool] | None) -> list[ToolDef] | None:
    """Responses tools are flat (``{"type": "function", "name": …}``); chat tools nest."""
    if not tools:
        return None
    defs: list[ToolDef] = []
    for tool in tools:
        function: ToolFunction = {
            "name": tool.name,
            "parameters": tool.parameters or {"type": "object", "properties": {}},
        }
        if tool.description is not None:
            function["description"] = tool.description
        defs.append({"type": "function", "function": function})
    return defs


# ---------------------------------------------------------------------- what goes out


class OutputTextPart(Struct, kw_only=True, tag_field="type", tag="output_text"):
    text: str
    annotations: list[Any] = []


class OutputMessage(Struct, kw_only=True, tag_field="type", tag="message"):
    id: str
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["assistant"] = "assistant"
    content: list[OutputTextPart]


class OutputFunctionCall(Struct, kw_only=True, tag_field="type", tag="function_call"):
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed"] = "completed"


OutputItem = OutputMessage | OutputFunctionCall


class InputTokensDetails(Struct, kw_only=True, frozen=True):
    cached_tokens: int = 0


class OutputTokensDetails(Struct, kw_only=True, frozen=True):
    reasoning_tokens: int = 0


class ResponseUsage(Struct, kw_only=True):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputTokensDetails = InputTokensDetails()
    output_tokens_details: OutputTokensDetails = OutputTokensDetails()


class ResponseError(Struct, kw_only=True):
    code: str
    message: str


class ConversationOut(Struct, kw_only=True):
    id: str


Status = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]


class ResponseObject(Struct, kw_only=True):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Status
    model: str
    output: list[OutputItem]
    usage: ResponseUsage | None
    error: ResponseError | None = None
    incomplete_details: None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: ConversationOut | None = None
    metadata: dict[str, str] = {}
    parallel_tool_calls: bool = True
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[FunctionTool] = []
    temperature: float | None = None
    top_p: float | None = None
    store: bool = True


def response_usage(usage: Usage) -> ResponseUsage:
    return ResponseUsage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )
