"""The OpenAI-compatible routes: chat completions (whole and streamed), models, embeddings.

Each handler decodes the body once with msgspec, validates it against ``wayport.server.wire``,
hands a core request to the ``Gateway`` and encodes the answer with msgspec. Errors are raised
as ``wayport.core.errors`` and rendered by the app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from wayport.core.errors import ModelNotFound
from wayport.core.ids import new_id
from wayport.core.types import ChatRequest, Chunk, EmbeddingRequest, Usage
from wayport.server.http import CLIENT_CLOSED, DONE_EVENT, Exchange, sse_event
from wayport.server.responses import (
    ChatCompletionChunk,
    ChunkChoice,
    Delta,
    ModelCard,
    chat_completion,
    embedding_list,
    encode,
    model_list,
    tool_call_deltas,
    usage_body,
)
from wayport.server.wire import (
    CHAT_STRUCTURAL_FIELDS,
    EMBEDDINGS_STRUCTURAL_FIELDS,
    ChatCompletionBody,
    EmbeddingsBody,
    check,
    check_embedding_input,
    decode_object,
)
from wayport.service.gateway import Gateway

MODELS_PREFIX = "/v1/models/"
AGENT_PREFIX = "agent/"

#: Answers a chat completion whose model is ``agent/<name>`` (``AgentsApi.chat_completion``).
AgentChat = Callable[[Exchange, dict[str, Any], ChatCompletionBody], Awaitable[None]]


class OpenAIApi:
    def __init__(
        self, gateway: Gateway, *, max_body_bytes: int, agent_chat: AgentChat | None = None
    ) -> None:
        self._gateway = gateway
        self._agent_chat = agent_chat
        self._limit = max_body_bytes
        self._created = int(time.time())

    async def chat_completions(self, ex: Exchange) -> None:
        ex.require_json()
        raw = decode_object(await ex.read_body(self._limit))
        body = check(raw, ChatCompletionBody)
        model = body.model
        if self._gateway.has_model(model):
            ex.model = model
        elif self._agent_chat is not None and model.startswith(AGENT_PREFIX):
            ex.model = model
            await self._agent_chat(ex, raw, body)
            return
        stream = bool(body.stream)
        options = body.stream_options
        wants_usage = stream and options is not None and bool(options.include_usage)
        request = ChatRequest(
            model=model,
            messages=raw["messages"],
            stream=stream,
            include_usage=wants_usage,
            tools=raw.get("tools"),
            tool_choice=raw.get("tool_choice"),
            params={k: v for k, v in raw.items() if k not in CHAT_STRUCTURAL_FIELDS},
            request_id=ex.request_id,
        )
        if stream:
            await self._stream(ex, request, wants_usage)
            return
        completion = await self._gateway.complete(request)
        answer = chat_completion(
            completion, id_=new_id("chatcmpl"), created=int(time.time()), model=model
        )
        await ex.respond(200, encode(answer))

    async def _stream(self, ex: Exchange, request: ChatRequest, wants_usage: bool) -> None:
        """Stream while watching for the client to leave; when it does, the stream is closed
        at once (which frees the upstream connection or model slot) instead of at the next
        failed write."""
        chunks = self._gateway.stream(request)
        this = asyncio.current_task()
        assert this is not None
        left = False

        async def watch() -> None:
            nonlocal left
            await ex.wait_disconnect()
            left = True
            this.cancel()

        # One helper task, not two: the pump runs in the request's own task, and the watcher
        # cancels it (this task only ever waits inside the ``try`` below, so that is where
        # the cancellation lands).
        watcher = asyncio.ensure_future(watch())
        try:
            await self._pump(ex, chunks, request.model, wants_usage)
        except asyncio.CancelledError:
            if left and this.uncancel() == 0:
                ex.status = CLIENT_CLOSED
                return
            raise
        finally:
            watcher.cancel()

    async def _pump(
        self,
        ex: Exchange,
        chunks: AsyncGenerator[Chunk, None],
        model: str,
        wants_usage: bool,
    ) -> None:
        try:
            # An error before the first chunk becomes a plain JSON error response.
            first = await anext(chunks, None)
            await ex.start_stream()
            frame = _Framer(model)
            usage = first.usage if first is not None else None
            await ex.write(frame.first(first if first is not None else Chunk()))
            if first is not None:
                async for chunk in chunks:
                    if chunk.usage is not None:
                        usage = chunk.usage
                    data = frame.next(chunk)
                    if data is not None:
                        await ex.write(data)
            if wants_usage:
                await ex.write(frame.usage(usage if usage is not None else Usage()))
            await ex.end_stream(DONE_EVENT)
        finally:
            await chunks.aclose()

    async def list_models(self, ex: Exchange) -> None:
        await ex.respond(200, encode(model_list(self._gateway.models(), created=self._created)))

    async def get_model(self, ex: Exchange) -> None:
        name = ex.path[len(MODELS_PREFIX) :]
        if not self._gateway.has_model(name):
            raise ModelNotFound(f"The model {name!r} does not exist", param="model")
        ex.model = name
        await ex.respond(200, encode(ModelCard(id=name, created=self._created)))

    async def embeddings(self, ex: Exchange) -> None:
        ex.require_json()
        raw = decode_object(await ex.read_body(self._limit))
        body = check(raw, EmbeddingsBody)
        check_embedding_input(body.input)
        if self._gateway.has_model(body.model):
            ex.model = body.model
        given = raw["input"]
        # A flat list of token ids is one input, not many.
        value = (
            [given] if given and isinstance(given, list) and isinstance(given[0], int) else given
        )
        request = EmbeddingRequest(
            model=body.model,
            input=value,
            params={k: v for k, v in raw.items() if k not in EMBEDDINGS_STRUCTURAL_FIELDS},
            request_id=ex.request_id,
        )
        result = await self._gateway.embed(request)
        answer = embedding_list(
            result, model=body.model, base64_out=body.encoding_format == "base64"
        )
        await ex.respond(200, encode(answer))


class _Framer:
    """Turns core chunks into ``data:`` events of one ``chat.completion.chunk`` stream."""

    __slots__ = ("_created", "_id", "_model")

    def __init__(self, model: str) -> None:
        self._id = new_id("chatcmpl")
        self._created = int(time.time())
        self._model = model

    def _event(self, delta: Delta, finish_reason: str | None) -> bytes:
        chunk = ChatCompletionChunk(
            id=self._id,
            object="chat.completion.chunk",
            created=self._created,
            model=self._model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish_reason)],
        )
        return sse_event(encode(chunk))

    def first(self, chunk: Chunk) -> bytes:
        """The first event always carries ``role: assistant``."""
        calls = tool_call_deltas(chunk.tool_calls) if chunk.tool_calls else None
        content = chunk.content if chunk.content is not None or calls else ""
        delta = Delta(role="assistant", content=content, tool_calls=calls)
        return self._event(delta, chunk.finish_reason)

    def next(self, chunk: Chunk) -> bytes | None:
        if chunk.content is None and not chunk.tool_calls and chunk.finish_reason is None:
            return None  # usage-only chunks are reported once, at the end
        calls = tool_call_deltas(chunk.tool_calls) if chunk.tool_calls else None
        return self._event(Delta(content=chunk.content, tool_calls=calls), chunk.finish_reason)

    def usage(self, usage: Usage) -> bytes:
        chunk = ChatCompletionChunk(
            id=self._id,
            object="chat.completion.chunk",
            created=self._created,
            model=self._model,
            choices=[],
            usage=usage_body(usage),
        )
        return sse_event(encode(chunk))
