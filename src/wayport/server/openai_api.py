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
from wayport.server.http import CLIENT_CLOSED, DONE_EVENT, Exchange
from wayport.server.responses import (
    ChatCompletionChunk,
    Delta,
    ModelCard,
    chat_completion,
    embedding_list,
    encode,
    model_list,
    tool_call_deltas,
    usage_body,
)
from wayport.server.usage_api import begin_request  # limits and usage
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
from wayport.service.metering import Meter, Metering  # limits and usage

MODELS_PREFIX = "/v1/models/"
AGENT_PREFIX = "agent/"

#: Answers a chat completion whose model is ``agent/<name>`` (``AgentsApi.chat_completion``).
AgentChat = Callable[[Exchange, dict[str, Any], ChatCompletionBody], Awaitable[None]]


class OpenAIApi:
    def __init__(
        self,
        gateway: Gateway,
        *,
        max_body_bytes: int,
        agent_chat: AgentChat | None = None,
        metering: Metering | None = None,
    ) -> None:
        self._gateway = gateway
        self._metering = metering
        self._agent_chat = agent_chat
        self._limit = max_body_bytes
        self._created = int(time.time())

    async def chat_completions(self, ex: Exchange) -> None:
        ex.require_json()
        data = await ex.read_body(self._limit)
        raw = decode_object(data)
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
        meter = await begin_request(self._metering, ex, model, raw, len(data))
        if stream:
            await self._stream(ex, request, wants_usage, meter)
            return
        try:
            completion = await self._gateway.complete(request)
        except BaseException:
            if meter is not None:
                await meter.done(None, status="failed")
            raise
        if meter is not None:
            await meter.done(completion.usage)
        answer = chat_completion(
            completion, id_=new_id("chatcmpl"), created=int(time.time()), model=model
        )
        await ex.respond(200, encode(answer))

    async def _stream(
        self, ex: Exchange, request: ChatRequest, wants_usage: bool, meter: Meter | None = None
    ) -> None:
        """Stream while watching for the client to leave; when it does, the stream is closed
        at once (which frees the upstream connection or model slot) instead of at the next
        failed write."""
        batches = self._gateway.stream_batches(request)
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
        usage: Usage | None = None
        try:
            usage = await self._pump(ex, batches, request.model, wants_usage, meter)
        except asyncio.CancelledError:
            if left and this.uncancel() == 0:
                ex.status = CLIENT_CLOSED
                if meter is not None:  # what it used is unknown: the reservation stands
                    await meter.done(None, status="cancelled", keep=True)
                return
            raise
        finally:
            watcher.cancel()
            if meter is not None:
                await meter.done(usage, status="completed" if usage is not None else "failed")

    async def _pump(
        self,
        ex: Exchange,
        batches: AsyncGenerator[list[Chunk], None],
        model: str,
        wants_usage: bool,
        meter: Meter | None = None,
    ) -> Usage:
        """Frame and write the chunks; return the usage the stream reported. The chunks that
        arrived together (one upstream read) go out in one write: never later than they would
        one by one, in fewer system calls."""
        try:
            # An error before the first chunk becomes a plain JSON error response.
            first = await anext(batches, None)
            await ex.start_stream()
            frame = _Framer(model)
            usage: Usage | None = None
            if first is None:
                await ex.write(frame.first(Chunk()))
            else:
                head = first[0]
                usage = head.usage
                parts = [frame.first(head)]
                usage = frame.extend(parts, first, 1, usage)
                await ex.write(b"".join(parts))
                async for batch in batches:
                    parts = []
                    usage = frame.extend(parts, batch, 0, usage)
                    if parts:
                        await ex.write(parts[0] if len(parts) == 1 else b"".join(parts))
            if meter is not None:  # settled before the end: the next request sees it
                await meter.done(usage if usage is not None else Usage())
            if wants_usage:
                usage_event = frame.usage(usage if usage is not None else Usage())
                await ex.end_stream(usage_event + DONE_EVENT)
            else:
                await ex.end_stream(DONE_EVENT)
        finally:
            await batches.aclose()
        return usage if usage is not None else Usage()

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
    """Turns core chunks into ``data:`` events of one ``chat.completion.chunk`` stream.

    Everything but the delta and the finish reason is the same in every event of a stream, so
    it is encoded once; a content-only delta (nearly every event) is spliced in without
    building a struct. The bytes are those ``encode(ChatCompletionChunk(...))`` would give.
    """

    __slots__ = ("_head", "_usage_head")

    def __init__(self, model: str) -> None:
        envelope = encode(
            ChatCompletionChunk(
                id=new_id("chatcmpl"),
                object="chat.completion.chunk",
                created=int(time.time()),
                model=model,
                choices=[],
            )
        )
        # envelope ends with '"choices":[]}'
        self._head = b"data: " + envelope[:-3] + b'[{"index":0,"delta":'
        self._usage_head = b"data: " + envelope[:-1] + b',"usage":'

    def _event(self, delta: bytes, finish_reason: str | None) -> bytes:
        if finish_reason is None:
            return self._head + delta + _NO_FINISH
        return self._head + delta + b',"finish_reason":' + encode(finish_reason) + b"}]}\n\n"

    def first(self, chunk: Chunk) -> bytes:
        """The first event always carries ``role: assistant``."""
        calls = tool_call_deltas(chunk.tool_calls) if chunk.tool_calls else None
        content = chunk.content if chunk.content is not None or calls else ""
        delta = Delta(role="assistant", content=content, tool_calls=calls)
        return self._event(encode(delta), chunk.finish_reason)

    def next(self, chunk: Chunk) -> bytes | None:
        content, calls, finish = chunk.content, chunk.tool_calls, chunk.finish_reason
        if calls:
            delta = encode(Delta(content=content, tool_calls=tool_call_deltas(calls)))
        elif content is not None:
            delta = b'{"content":' + encode(content) + b"}"
        elif finish is not None:
            delta = b"{}"
        else:
            return None  # usage-only chunks are reported once, at the end
        return self._event(delta, finish)

    def extend(
        self, parts: list[bytes], chunks: list[Chunk], start: int, usage: Usage | None
    ) -> Usage | None:
        """Append the events of ``chunks[start:]`` to ``parts``; return the latest usage seen
        (``usage`` when none of them carries one)."""
        for i in range(start, len(chunks)):
            chunk = chunks[i]
            if chunk.usage is not None:
                usage = chunk.usage
            data = self.next(chunk)
            if data is not None:
                parts.append(data)
        return usage

    def usage(self, usage: Usage) -> bytes:
        return self._usage_head + encode(usage_body(usage)) + b"}\n\n"


_NO_FINISH = b',"finish_reason":null}]}\n\n'
