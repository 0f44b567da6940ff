"""A backend for the Anthropic Messages API, spoken to from Wayport's OpenAI-shaped requests.

    backend = AnthropicBackend(name="claude", model="claude-sonnet-4-5", api_key=key)
    await backend.start()
    answer = await backend.complete(request, timeout=30)   # a Completion, as from any backend

Requests are translated on the way out (system messages to ``system``, tool calls to
``tool_use`` blocks, tool results to ``tool_result`` blocks in a user turn, consecutive turns of
one role merged, as Anthropic requires alternation) and answers on the way back, so the layers
above never learn which protocol was spoken.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import msgspec

from wayport.core.errors import BackendError, BackendRejected, Unsupported
from wayport.core.types import (
    ChatRequest,
    Chunk,
    Completion,
    EmbeddingRequest,
    Embeddings,
    Message,
    ToolCall,
    ToolDef,
    Usage,
)
from wayport.models._http import Timeouts, UpstreamClient
from wayport.models.sse import SSEEvent

__all__ = ["AnthropicBackend", "to_anthropic"]

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Anthropic-only options that OpenAI-shaped clients may still send; the rest of ``params``
# has no Anthropic meaning and is left out.
_PASSTHROUGH = ("temperature", "top_p", "top_k", "thinking")


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None

    def prompt(self) -> int:
        # Anthropic counts cached prompt tokens apart; all of them were part of the prompt.
        return (
            (self.input_tokens or 0)
            + (self.cache_creation_input_tokens or 0)
            + (self.cache_read_input_tokens or 0)
        )


class _Block(msgspec.Struct):
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None


class _Message(msgspec.Struct):
    content: list[_Block] = []
    stop_reason: str | None = None
    usage: _Usage | None = None
    model: str | None = None


class _Delta(msgspec.Struct):
    type: str | None = None
    text: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None


class _Event(msgspec.Struct):
    type: str
    index: int = 0
    message: _Message | None = None
    content_block: _Block | None = None
    delta: _Delta | None = None
    usage: _Usage | None = None
    error: Any = None


_MESSAGE = msgspec.json.Decoder(_Message)
_EVENT = msgspec.json.Decoder(_Event)
_ANY = msgspec.json.Decoder()


@dataclass(slots=True)
class _StreamState:
    prompt_tokens: int = 0
    tools: dict[int, int] = field(default_factory=dict)  # content block index -> tool index
    finished: bool = False  # message_delta (with the stop reason) seen
    done: bool = False  # message_stop seen


class AnthropicBackend:
    """A ``ModelBackend`` for one Claude model behind the Messages API (or a proxy of it).

    ``default_max_tokens`` fills the ``max_tokens`` Anthropic requires when the request has
    none; the timeouts and the pool work as for ``OpenAICompatBackend``.
    """

    def __init__(
        self,
        *,
        name: str,
        model: str,
        api_key: str | None = None,
        base_url: str = "https://api.anthropic.com",
        anthropic_version: str = "2023-06-01",
        default_max_tokens: int = 1024,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 5.0,
        first_byte_timeout: float = 60.0,
        total_timeout: float = 600.0,
        max_connections: int = 100,
    ) -> None:
        self.name = name
        self.model = model
        self.default_max_tokens = default_max_tokens
        self._url = f"{base_url.rstrip('/')}/v1/messages"
        self._encoder = msgspec.json.Encoder()
        session_headers = {
            "content-type": "application/json",
            "anthropic-version": anthropic_version,
            "user-agent": "wayport",
        }
        if api_key:
            session_headers["x-api-key"] = api_key
        session_headers.update(headers or {})
        self._http = UpstreamClient(
            name=name,
            headers=session_headers,
            timeouts=Timeouts(
                connect=connect_timeout, first_byte=first_byte_timeout, total=total_timeout
            ),
            max_connections=max_connections,
            secret=api_key,
        )

    def __repr__(self) -> str:
        return f"AnthropicBackend(name={self.name!r}, model={self.model!r}, url={self._url!r})"

    async def start(self) -> None:
        await self._http.start()

    async def close(self) -> None:
        await self._http.close()

    def ready(self) -> bool:
        return self._http.ready()

    async def complete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        raw = await self._http.post(
            self._url, self._body(request, stream=False), timeout=timeout, headers=None
        )
        msg = self._http.decode(_MESSAGE, raw)
        texts = [b.text for b in msg.content if b.type == "text" and b.text]
        tool_calls: list[ToolCall] = [
            {
                "id": b.id or "",
                "type": "function",
                "function": {"name": b.name or "", "arguments": _compact(b.input)},
            }
            for b in msg.content
            if b.type == "tool_use"
        ]
        usage = msg.usage or _Usage()
        return Completion(
            content="".join(texts) if texts or not tool_calls else None,
            tool_calls=tool_calls or None,
            finish_reason=_STOP_REASONS.get(msg.stop_reason or "", "stop"),
            usage=Usage(prompt_tokens=usage.prompt(), completion_tokens=usage.output_tokens or 0),
            model=msg.model or self.model,
        )

    async def stream(
        self, request: ChatRequest, *, timeout: float | None = None
    ) -> AsyncIterator[Chunk]:
        events = self._http.events(
            self._url, self._body(request, stream=True), timeout=timeout, headers=None
        )
        state = _StreamState()
        async with aclosing(events):
            async for event in events:
                if state.done:
                    continue  # read on to the end so the connection can go back to the pool
                chunk = self._chunk(event, state)
                if chunk is not None:
                    yield chunk
        if not (state.done or state.finished):
            raise BackendError("upstream stream ended early", code="upstream_truncated")

    async def embed(self, request: EmbeddingRequest, *, timeout: float | None = None) -> Embeddings:
        raise Unsupported(f"deployment {self.name!r} (Anthropic) does not serve embeddings")

    def _body(self, request: ChatRequest, *, stream: bool) -> bytes:
        body = to_anthropic(request, model=self.model, default_max_tokens=self.default_max_tokens)
        if stream:
            body["stream"] = True
        return self._encoder.encode(body)

    def _chunk(self, event: SSEEvent, state: _StreamState) -> Chunk | None:
        if event.event == "error":
            raise self._http.event_error(event.data)
        data = self._http.decode(_EVENT, event.data)
        kind = data.type
        if kind == "content_block_delta" and data.delta is not None:
            delta = data.delta
            if delta.type == "text_delta" and delta.text:
                return Chunk(content=delta.text)
            if delta.type == "input_json_delta" and delta.partial_json:
                index = state.tools.get(data.index, 0)
                return Chunk(
                    tool_calls=[{"index": index, "function": {"arguments": delta.partial_json}}]
                )
            return None  # thinking and signature deltas have no OpenAI counterpart
        if kind == "content_block_start" and data.content_block is not None:
            block = data.content_block
            if block.type == "tool_use":
                index = state.tools[data.index] = len(state.tools)
                start = _compact(block.input) if block.input else ""
                function = {"name": block.name or "", "arguments": start}
                return Chunk(
                    tool_calls=[
                        {
                            "index": index,
                            "id": block.id or "",
                            "type": "function",
                            "function": function,
                        }
                    ]
                )
            return Chunk(content=block.text) if block.type == "text" and block.text else None
        if kind == "message_start":
            usage = data.message.usage if data.message is not None else None
            state.prompt_tokens = usage.prompt() if usage is not None else 0
            return Chunk(role="assistant")
        if kind == "message_delta":
            state.finished = True
            stop = data.delta.stop_reason if data.delta is not None else None
            usage = data.usage or _Usage()
            prompt = usage.prompt() if usage.input_tokens is not None else state.prompt_tokens
            return Chunk(
                finish_reason=_STOP_REASONS.get(stop or "", "stop"),
                usage=Usage(prompt_tokens=prompt, completion_tokens=usage.output_tokens or 0),
            )
        if kind == "message_stop":
            state.done = True
        elif kind == "error":
            raise self._http.event_error(event.data)
        return None  # ping, content_block_stop, and event types added after this was written


def to_anthropic(
    request: ChatRequest, *, model: str, default_max_tokens: int = 1024
) -> dict[str, Any]:
    """The Messages API body for an OpenAI-shaped request (without ``stream``)."""
    params = request.params
    system, messages = _messages(request.messages)
    max_tokens = params.get("max_tokens") or params.get("max_completion_tokens")
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens or default_max_tokens,
        "messages": messages,
    }
    if system:
        body["system"] = "\n\n".join(system)
    for name in _PASSTHROUGH:
        if params.get(name) is not None:
            body[name] = params[name]
    stop = params.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if params.get("user"):
        body["metadata"] = {"user_id": str(params["user"])}
    if request.tools:
        body["tools"] = [_tool(t) for t in request.tools]
        choice = _tool_choice(request.tool_choice)
        if params.get("parallel_tool_calls") is False and choice.get("type") != "none":
            choice["disable_parallel_tool_use"] = True
        if request.tool_choice is not None or len(choice) > 1:
            body["tool_choice"] = choice
    return body


def _messages(messages: Sequence[Message]) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for m in messages:
        role = m["role"]
        content = m.get("content")
        if role in ("system", "developer"):
            text = "".join(b["text"] for b in _blocks(content) if b["type"] == "text")
            if text:
                system.append(text)
            continue
        if role == "tool":
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": m.get("tool_call_id", ""),
            }
            parts = _blocks(content)
            if parts:
                result["content"] = parts
            blocks, wire_role = [result], "user"
        elif role == "assistant":
            blocks = _blocks(content) + [_tool_use(c) for c in m.get("tool_calls") or ()]
            wire_role = "assistant"
        else:
            blocks, wire_role = _blocks(content), "user"
        if not blocks:
            continue
        if turns and turns[-1]["role"] == wire_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": wire_role, "content": blocks})
    for turn in turns:
        # Anthropic wants a user turn's tool results before anything else in it.
        content = turn["content"]
        if turn["role"] == "user" and len(content) > 1:
            content.sort(key=lambda b: b["type"] != "tool_result")
    return system, turns


def _blocks(content: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if not content:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url")))
        else:
            raise Unsupported(
                f"content part {kind!r} cannot be sent to Anthropic", param="messages"
            )
    return blocks


def _image(image_url: object) -> dict[str, Any]:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str):
        raise BackendRejected("image_url.url must be a string", param="messages")
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if encoding != "base64" or not data:
            raise Unsupported("only base64 data URLs can be sent to Anthropic", param="messages")
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _tool_use(call: ToolCall) -> dict[str, Any]:
    arguments = call["function"].get("arguments") or "{}"
    try:
        parsed = _ANY.decode(arguments)
    except msgspec.DecodeError as exc:
        raise BackendRejected(
            f"tool call {call['id']!r} arguments are not valid JSON", param="messages"
        ) from exc
    if not isinstance(parsed, dict):
        raise BackendRejected(
            f"tool call {call['id']!r} arguments must be an object", param="messages"
        )
    return {"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": parsed}


def _tool(tool: ToolDef) -> dict[str, Any]:
    fn = tool["function"]
    out: dict[str, Any] = {
        "name": fn["name"],
        "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
    }
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def _tool_choice(choice: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if choice is None or choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, Mapping):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if isinstance(name, str):
            return {"type": "tool", "name": name}
    raise BackendRejected(
        f"tool_choice {choice!r} cannot be sent to Anthropic", param="tool_choice"
    )


def _compact(value: Any) -> str:
    return msgspec.json.encode(value if value is not None else {}).decode()
