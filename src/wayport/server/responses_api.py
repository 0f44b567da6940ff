"""The OpenAI Responses API: ``POST /v1/responses`` and ``GET /v1/responses/{id}``.

    client = openai.OpenAI(base_url="http://127.0.0.1:8080/v1", api_key=key)
    first = client.responses.create(model="agent/assistant", input="hi")
    later = client.responses.create(model="agent/assistant", input="and then?",
                                    previous_response_id=first.id)

Streaming (``"stream": true``) sends ``event: <type>`` + ``data: {…, "sequence_number": n}``:
``response.created``, ``response.in_progress``, then per output item ``output_item.added`` …
``output_item.done`` (text items with ``content_part.added``, ``output_text.delta``…,
``output_text.done``, ``content_part.done``), then ``response.completed`` (or
``response.failed``). Storage and ids: ``wayport.service.responses``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import msgspec

from wayport.core.agent import AgentSpec  # limits and usage
from wayport.core.ids import new_id
from wayport.core.types import Usage  # limits and usage
from wayport.server.errors import RouteNotFound
from wayport.server.http import Exchange
from wayport.server.release_routing import routing  # releases
from wayport.server.responses import encode
from wayport.server.responses_wire import (
    ConversationOut,
    ConversationRef,
    OutputFunctionCall,
    OutputItem,
    OutputMessage,
    OutputTextPart,
    ResponseError,
    ResponseObject,
    ResponsesBody,
    normalise,
    response_usage,
    to_messages,
    to_tool_defs,
)
from wayport.server.usage_api import agent_info, begin_request, begin_run  # limits and usage
from wayport.server.wire import check, decode_object
from wayport.service.metering import Meter, Metering  # limits and usage
from wayport.service.responses import Answer, ResponseRequest, ResponsesService

RESPONSES_PATH = "/v1/responses"
RESPONSES_PREFIX = "/v1/responses/"


class ResponsesApi:
    def __init__(
        self,
        service: ResponsesService,
        *,
        max_body_bytes: int,
        metering: Metering | None = None,
        agent_of: Callable[[str, str], Awaitable[AgentSpec]] | None = None,
    ) -> None:
        self._service = service
        self._limit = max_body_bytes
        self._metering = metering  # limits and usage
        self._agent_of = agent_of

    async def _meter(self, ex: Exchange, raw: dict[str, Any], size: int) -> Meter | None:
        model = str(raw.get("model", ""))
        if model.startswith("agent/") and self._agent_of is not None:
            spec = await self._agent_of(model.removeprefix("agent/"), ex.principal.tenant)
            agent = agent_info(spec)
            return await begin_run(self._metering, ex, agent, raw.get("input"))
        return await begin_request(self._metering, ex, model, raw, size)

    async def create(self, ex: Exchange) -> None:
        ex.require_json()
        data = await ex.read_body(self._limit)
        raw = normalise(decode_object(data))
        body = check(raw, ResponsesBody)
        ex.model = body.model
        conversation = body.conversation
        release = routing(ex, raw.get("user"))  # releases: preview header, sticky user
        params: dict[str, Any] = {}
        if body.max_output_tokens is not None:
            params["max_tokens"] = body.max_output_tokens
        if body.temperature is not None:
            params["temperature"] = body.temperature
        if body.top_p is not None:
            params["top_p"] = body.top_p
        request = ResponseRequest(
            model=body.model,
            messages=to_messages(body.input),
            instructions=body.instructions,
            previous_response_id=body.previous_response_id,
            conversation=(
                conversation.id if isinstance(conversation, ConversationRef) else conversation
            ),
            tools=to_tool_defs(body.tools),
            tool_choice=body.tool_choice,
            params=params,
            store=body.store,
            request_id=ex.request_id,
            tenant=ex.principal.tenant,
            preview=release.preview,
            user=release.user,
        )
        shape = _Shape(body)
        meter = await self._meter(ex, raw, len(data)) if self._metering is not None else None
        if not body.stream:
            try:
                answer = await self._service.create(request)
            except BaseException:
                if meter is not None:
                    await meter.done(None, status="failed")
                raise
            if meter is not None:
                await meter.done(answer.usage or Usage(), status=answer.status)
            await ex.respond(200, encode(shape.response(answer)))
            return
        pieces = self._service.stream(request)
        last: list[Answer] = []
        try:
            first = await anext(pieces)  # errors before the model starts: a JSON error
            await ex.start_stream()
            if isinstance(first, Answer):
                last[:] = [first]
            await _Events(ex, shape).run(first, _tap(pieces, last))
        finally:
            await pieces.aclose()
            if meter is not None:
                if last:
                    await meter.done(last[0].usage or Usage(), status=last[0].status)
                else:  # ended early: once streaming, what it used is unknown
                    await meter.done(None, status="failed", keep=ex.status == 200)

    async def get(self, ex: Exchange) -> None:
        response_id = ex.path[len(RESPONSES_PREFIX) :]
        if not response_id or "/" in response_id:
            raise RouteNotFound(f"No route {ex.method} {ex.path}")
        answer = await self._service.get(response_id, tenant=ex.principal.tenant)
        await ex.respond(200, encode(_Shape(None).response(answer)))


async def _tap(
    pieces: AsyncGenerator[str | Answer, None], last: list[Answer]
) -> AsyncGenerator[str | Answer, None]:
    """``pieces``, keeping the final ``Answer`` in ``last`` (for metering)."""
    async for piece in pieces:
        if isinstance(piece, Answer):
            last[:] = [piece]
        yield piece


class _Shape:
    """Builds ``response`` objects echoing what the request asked for."""

    __slots__ = ("_body", "item_ids", "model")

    def __init__(self, body: ResponsesBody | None) -> None:
        self._body = body
        self.model = body.model if body is not None else ""
        self.item_ids: dict[int, str] = {}

    def item_id(self, index: int, prefix: str) -> str:
        return self.item_ids.setdefault(index, new_id(prefix))

    def output(self, answer: Answer) -> list[OutputItem]:
        items: list[OutputItem] = []
        if answer.text:
            part = OutputTextPart(text=answer.text)
            items.append(
                OutputMessage(id=self.item_id(0, "msg"), status="completed", content=[part])
            )
        for call in answer.tool_calls:
            function = call["function"]
            items.append(
                OutputFunctionCall(
                    id=self.item_id(len(items), "fc"),
                    call_id=call["id"],
                    name=function["name"],
                    arguments=function.get("arguments", ""),
                )
            )
        return items

    def response(self, answer: Answer, *, status: str | None = None) -> ResponseObject:
        body = self._body
        in_progress = status is not None
        error = None
        if answer.status in ("failed", "cancelled") and not in_progress:
            error = ResponseError(code=f"run_{answer.status}", message=answer.error or "")
        return ResponseObject(
            id=answer.id,
            created_at=int(answer.created_at),
            status=status or answer.status,  # type: ignore[arg-type]
            model=answer.model,
            output=[] if in_progress else self.output(answer),
            usage=None if in_progress or answer.usage is None else response_usage(answer.usage),
            error=error,
            instructions=body.instructions if body else None,
            previous_response_id=answer.previous_response_id,
            conversation=ConversationOut(id=answer.conversation) if answer.conversation else None,
            tools=list(body.tools or ()) if body else [],
            tool_choice=_tool_choice(body),
            temperature=body.temperature if body else None,
            top_p=body.top_p if body else None,
            store=answer.conversation is not None,
        )


def _tool_choice(body: ResponsesBody | None) -> str | dict[str, Any]:
    if body is None or body.tool_choice is None:
        return "auto"
    return body.tool_choice


class _Events:
    """Writes the stream events of one response, numbered."""

    __slots__ = ("_ex", "_seq", "_shape")

    def __init__(self, ex: Exchange, shape: _Shape) -> None:
        self._ex = ex
        self._shape = shape
        self._seq = 0

    async def send(self, kind: str, data: dict[str, Any]) -> None:
        data["type"] = kind
        data["sequence_number"] = self._seq
        self._seq += 1
        await self._ex.write(b"event: " + kind.encode() + b"\ndata: " + encode(data) + b"\n\n")

    async def run(self, first: str | Answer, rest: AsyncGenerator[str | Answer, None]) -> None:
        # The id is known only once the answer is stored, so the opening events carry a
        # provisional one: clients key streams by connection, not by this id.
        opening = Answer(
            id=new_id("resp"), model=self._shape.model, status="in_progress", created_at=time.time()
        )
        if isinstance(first, Answer):
            opening = first
        shell = self._shape.response(opening, status="in_progress")
        await self.send("response.created", {"response": shell})
        await self.send("response.in_progress", {"response": shell})
        text: list[str] = []
        piece: str | Answer | None = first
        item_id = self._shape.item_id(0, "msg")
        while isinstance(piece, str):
            if not text:
                await self._open_text(item_id)
            text.append(piece)
            await self.send(
                "response.output_text.delta",
                {"item_id": item_id, "output_index": 0, "content_index": 0, "delta": piece},
            )
            piece = await anext(rest, None)
        if piece is None:  # pragma: no cover - the service always ends with an Answer
            raise RuntimeError("the response stream ended without an answer")
        items = self._shape.output(piece)
        if text:
            await self._close_text(item_id, "".join(text), items[0])
        for index, item in enumerate(items):
            if isinstance(item, OutputFunctionCall):
                await self._function_call(index, item)
        final = self._shape.response(piece)
        failed = piece.status in ("failed", "cancelled")
        kind = "response.failed" if failed else "response.completed"
        await self.send(kind, {"response": final})
        await self._ex.end_stream()

    async def _open_text(self, item_id: str) -> None:
        item = OutputMessage(id=item_id, status="in_progress", content=[])
        await self.send("response.output_item.added", {"output_index": 0, "item": item})
        part = OutputTextPart(text="")
        await self.send(
            "response.content_part.added",
            {"item_id": item_id, "output_index": 0, "content_index": 0, "part": part},
        )

    async def _close_text(self, item_id: str, text: str, item: OutputItem) -> None:
        where = {"item_id": item_id, "output_index": 0, "content_index": 0}
        await self.send("response.output_text.done", {**where, "text": text})
        await self.send("response.content_part.done", {**where, "part": OutputTextPart(text=text)})
        await self.send("response.output_item.done", {"output_index": 0, "item": item})

    async def _function_call(self, index: int, item: OutputFunctionCall) -> None:
        opened = msgspec.structs.replace(item, status="in_progress", arguments="")
        await self.send("response.output_item.added", {"output_index": index, "item": opened})
        await self.send(
            "response.function_call_arguments.done",
            {"item_id": item.id, "output_index": index, "arguments": item.arguments},
        )
        await self.send("response.output_item.done", {"output_index": index, "item": item})
