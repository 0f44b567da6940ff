"""A backend for any server that speaks the OpenAI chat completions API: vLLM, Ollama, the
llama.cpp server, SGLang, OpenAI itself, DeepSeek, Qwen (DashScope) …

    backend = OpenAICompatBackend(name="vllm-a", base_url="http://127.0.0.1:8000/v1",
                                  model="Qwen/Qwen2.5-7B-Instruct")
    await backend.start()
    answer = await backend.complete(ChatRequest(model="chat", messages=[...]), timeout=30)
    async for chunk in backend.stream(request): ...
    await backend.close()

The request's ``params`` go upstream unchanged, so options this adapter has never heard of
(``response_format``, ``seed``, ``logprobs``, vendor extensions) keep working.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

import msgspec

from wayport.core.errors import BackendError, WayportError
from wayport.core.types import (
    ChatRequest,
    Chunk,
    Completion,
    EmbeddingRequest,
    Embeddings,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from wayport.models._http import Timeouts, UpstreamClient, error_info
from wayport.models.sse import SSEEvent

__all__ = ["OpenAICompatBackend"]

_USER_AGENT = "wayport"


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0


class _Function(msgspec.Struct):
    name: str = ""
    arguments: str | dict[str, Any] = ""


class _ToolCall(msgspec.Struct):
    function: _Function
    id: str = ""


class _Message(msgspec.Struct):
    content: str | list[Any] | None = None
    tool_calls: list[_ToolCall] | None = None


class _Choice(msgspec.Struct):
    message: _Message
    finish_reason: str | None = None


class _Response(msgspec.Struct):
    choices: list[_Choice]
    usage: _Usage | None = None
    model: str | None = None


class _DeltaFunction(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _DeltaToolCall(msgspec.Struct):
    index: int = 0
    id: str | None = None
    function: _DeltaFunction | None = None


class _Delta(msgspec.Struct):
    role: str | None = None
    content: str | None = None
    tool_calls: list[_DeltaToolCall] | None = None


class _ChunkChoice(msgspec.Struct):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None


class _StreamChunk(msgspec.Struct):
    choices: list[_ChunkChoice] | None = None
    usage: _Usage | None = None
    error: Any = None


class _EmbeddingItem(msgspec.Struct):
    embedding: list[float] | str
    index: int = 0


class _EmbeddingResponse(msgspec.Struct):
    data: list[_EmbeddingItem]
    usage: _Usage | None = None
    model: str | None = None


_RESPONSE = msgspec.json.Decoder(_Response)
_CHUNK = msgspec.json.Decoder(_StreamChunk)
_EMBEDDINGS = msgspec.json.Decoder(_EmbeddingResponse)


def _enc_hook(obj: object) -> object:
    # Requests may carry read-only mappings or tuples built by upper layers.
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, Sequence) and not isinstance(obj, str | bytes):
        return list(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def _usage(u: _Usage | None) -> Usage | None:
    if u is None:
        return None
    return Usage(prompt_tokens=u.prompt_tokens or 0, completion_tokens=u.completion_tokens or 0)


def _text(content: str | list[Any] | None) -> str | None:
    if content is None or isinstance(content, str):
        return content
    # A few servers answer with content parts; only text parts have a place in a Completion.
    return "".join(
        p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
    )


class OpenAICompatBackend:
    """A ``ModelBackend`` for one model on one OpenAI-compatible server.

    ``connect_timeout``, ``first_byte_timeout`` (until the response headers, and for streams
    the first event) and ``total_timeout`` are each capped by the ``timeout`` a call brings;
    ``max_connections`` bounds the one connection pool; ``stream_usage`` asks for the final
    usage chunk (``stream_options.include_usage``) so usage is known for every stream.
    """

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        model: str,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 5.0,
        first_byte_timeout: float = 60.0,
        total_timeout: float = 600.0,
        max_connections: int = 100,
        stream_usage: bool = True,
    ) -> None:
        self.name = name
        self.model = model
        base = base_url.rstrip("/")
        self._chat_url = f"{base}/chat/completions"
        self._embeddings_url = f"{base}/embeddings"
        self._stream_usage = stream_usage
        self._encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
        session_headers = {"content-type": "application/json", "user-agent": _USER_AGENT}
        if api_key:
            session_headers["authorization"] = f"Bearer {api_key}"
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
        return (
            f"OpenAICompatBackend(name={self.name!r}, model={self.model!r}, url={self._chat_url!r})"
        )

    async def start(self) -> None:
        await self._http.start()

    async def close(self) -> None:
        await self._http.close()

    def ready(self) -> bool:
        return self._http.ready()

    async def complete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        raw = await self._http.post(
            self._chat_url,
            self._body(request, stream=False),
            timeout=timeout,
            headers=_request_headers(request.request_id),
        )
        resp = self._http.decode(_RESPONSE, raw)
        if not resp.choices:
            raise self._http.invalid("no choices in the answer")
        choice = resp.choices[0]
        tool_calls: list[ToolCall] | None = None
        if choice.message.tool_calls:
            tool_calls = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": _args(call.function)},
                }
                for call in choice.message.tool_calls
            ]
        return Completion(
            content=_text(choice.message.content),
            tool_calls=tool_calls,
            finish_reason=choice.finish_reason or ("tool_calls" if tool_calls else "stop"),
            usage=_usage(resp.usage) or Usage(),
            model=resp.model or self.model,
        )

    async def stream(
        self, request: ChatRequest, *, timeout: float | None = None
    ) -> AsyncIterator[Chunk]:
        batches = self.stream_batches(request, timeout=timeout)
        async with aclosing(batches):
            async for batch in batches:
                for chunk in batch:
                    yield chunk

    async def stream_batches(
        self, request: ChatRequest, *, timeout: float | None = None
    ) -> AsyncGenerator[list[Chunk], None]:
        """``stream``, with the chunks of one upstream read together in one list (never
        empty): the router and the server pass a batch on, and write it, in one step."""
        events = self._http.event_batches(
            self._chat_url,
            self._body(request, stream=True),
            timeout=timeout,
            headers=_request_headers(request.request_id),
        )
        done = finished = False
        async with aclosing(events):
            async for batch in events:
                if done:
                    continue  # read on to the end so the connection can go back to the pool
                chunks: list[Chunk] = []
                for event in batch:
                    if event.data == "[DONE]":
                        done = True
                        break
                    try:
                        chunk = self._chunk(event)
                    except WayportError:
                        if chunks:
                            yield chunks  # what came before the error still goes out first
                        raise
                    if chunk is not None:
                        finished = finished or chunk.finish_reason is not None
                        chunks.append(chunk)
                if chunks:
                    yield chunks
        if not (done or finished):
            raise BackendError("upstream stream ended early", code="upstream_truncated")

    async def embed(self, request: EmbeddingRequest, *, timeout: float | None = None) -> Embeddings:
        body = {**request.params, "model": self.model, "input": request.input}
        raw = await self._http.post(
            self._embeddings_url,
            self._encoder.encode(body),
            timeout=timeout,
            headers=_request_headers(request.request_id),
        )
        resp = self._http.decode(_EMBEDDINGS, raw)
        items = sorted(resp.data, key=lambda item: item.index)
        floats = [i.embedding for i in items if not isinstance(i.embedding, str)]
        encoded = [i.embedding for i in items if isinstance(i.embedding, str)]
        if floats and encoded:
            raise self._http.invalid("mixed embedding encodings")
        return Embeddings(
            vectors=encoded or floats,  # base64 strings when encoding_format="base64"
            usage=_usage(resp.usage) or Usage(),
            model=resp.model or self.model,
        )

    def _body(self, request: ChatRequest, *, stream: bool) -> bytes:
        body: dict[str, Any] = {**request.params}
        body["model"] = self.model
        body["messages"] = request.messages
        body["stream"] = stream
        if request.tools:
            body["tools"] = request.tools
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if not stream:
            body.pop("stream_options", None)  # OpenAI rejects it on non-streamed requests
        elif self._stream_usage:
            options = body.get("stream_options")
            extra = dict(options) if isinstance(options, Mapping) else {}
            body["stream_options"] = {**extra, "include_usage": True}
        return self._encoder.encode(body)

    def _chunk(self, event: SSEEvent) -> Chunk | None:
        if event.event == "error":
            raise self._http.event_error(event.data)
        data = self._http.decode(_CHUNK, event.data)
        if data.error is not None:
            raise self._http.error(None, error_info({"error": data.error}, fallback=event.data))
        usage = None if data.usage is None else _usage(data.usage)
        choice = None
        for candidate in data.choices or ():
            if candidate.index == 0:
                choice = candidate
                break
        if choice is None:
            return Chunk(usage=usage) if usage is not None else None
        delta = choice.delta
        if delta is None:
            if choice.finish_reason is None and usage is None:
                return None
            return Chunk(finish_reason=choice.finish_reason, usage=usage)
        tool_calls = [_tool_delta(call) for call in delta.tool_calls] if delta.tool_calls else None
        if (
            delta.content is None
            and delta.role is None
            and tool_calls is None
            and choice.finish_reason is None
            and usage is None
        ):
            return None
        return Chunk(
            content=delta.content,
            tool_calls=tool_calls,
            finish_reason=choice.finish_reason,
            usage=usage,
            role=delta.role,
        )


def _request_headers(request_id: str) -> dict[str, str] | None:
    return {"x-request-id": request_id} if request_id else None


def _args(function: _Function) -> str:
    if isinstance(function.arguments, str):
        return function.arguments
    # Some servers (older Ollama) send the arguments as an object instead of a JSON string.
    return msgspec.json.encode(function.arguments).decode()


def _tool_delta(call: _DeltaToolCall) -> ToolCallDelta:
    out: ToolCallDelta = {"index": call.index}
    if call.id is not None:
        out["id"] = call.id
        out["type"] = "function"
    if call.function is not None:
        function: dict[str, str] = {}
        if call.function.name is not None:
            function["name"] = call.function.name
        if call.function.arguments is not None:
            function["arguments"] = call.function.arguments
        out["function"] = function
    return out
