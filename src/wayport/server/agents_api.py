"""The native agent routes, and the ``"model": "agent/<name>"`` branch of chat completions.

    GET    /v1/agents
    POST   /v1/sessions                 {"agent": "assistant", "metadata": {...}}
    GET    /v1/sessions/{id}?after=0&limit=50   the session and a page of its history
    DELETE /v1/sessions/{id}
    POST   /v1/sessions/{id}/runs       {"input": "hi" | [messages], "mode": "wait"}
    GET    /v1/runs/{id}
    GET    /v1/runs/{id}/stream         SSE: the run's events (a finished run: its last one)
    POST   /v1/runs/{id}/cancel

Runs answer ``{"id", "object": "run", "status", …}``: in ``mode`` ``wait`` (the default)
when finished (200), ``background`` at once (202), ``stream`` as server-sent events
(``event: text.delta`` …, last ``run.finished``). An ``Idempotency-Key`` header makes a
retried ``POST …/runs`` return the first run instead of starting another.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from msgspec import Meta, Struct

from wayport.core.agent import RunEvent, RunFinished, TextDelta, ToolCalled, ToolReturned
from wayport.core.errors import BackendError, Conflict, InvalidRequest, WayportError
from wayport.core.ids import new_id
from wayport.core.session import Run, RunStatus, Session, StoredMessage
from wayport.core.types import Completion, Message, Usage
from wayport.server.errors import MethodNotAllowed, RouteNotFound, error_body
from wayport.server.http import DONE_EVENT, Exchange, sse_event
from wayport.server.responses import (
    ChatCompletionChunk,
    ChunkChoice,
    Delta,
    chat_completion,
    encode,
    usage_body,
)
from wayport.server.wire import ChatCompletionBody, MessageBody, check, decode_object
from wayport.service.agents import AgentService

SESSIONS_PREFIX = "/v1/sessions/"
RUNS_PREFIX = "/v1/runs/"
_SESSION_HEADER = b"x-wayport-session"
_IDEMPOTENCY_HEADER = b"idempotency-key"
_MAX_PAGE = 1000


class SessionBody(Struct, kw_only=True):
    agent: Annotated[str, Meta(min_length=1, max_length=256)]
    metadata: dict[str, Any] | None = None


class RunBody(Struct, kw_only=True):
    input: Annotated[str, Meta(min_length=1)] | Annotated[list[MessageBody], Meta(min_length=1)]
    mode: Literal["wait", "stream", "background"] = "wait"


class AgentsApi:
    def __init__(self, service: AgentService, *, max_body_bytes: int) -> None:
        self._service = service
        self._limit = max_body_bytes

    async def list_agents(self, ex: Exchange) -> None:
        data = [
            {
                "id": a.name,
                "object": "agent",
                "description": a.description,
                "model": a.model,
                "version": a.version,
                "tools": list(a.tools),
                "queue_mode": a.queue_mode.value,
                "scope": a.scope.value,
            }
            for a in self._service.catalog.list()
        ]
        await ex.respond(200, encode({"object": "list", "data": data}))

    async def create_session(self, ex: Exchange) -> None:
        ex.require_json()
        body = check(decode_object(await ex.read_body(self._limit)), SessionBody)
        session = await self._service.create_session(body.agent, metadata=body.metadata)
        await ex.respond(201, encode(_session(session)))

    async def sessions(self, ex: Exchange) -> None:
        """``/v1/sessions/{id}`` and ``/v1/sessions/{id}/runs``."""
        session_id, _, rest = ex.path[len(SESSIONS_PREFIX) :].partition("/")
        if not session_id or rest not in ("", "runs"):
            raise RouteNotFound(f"No route {ex.method} {ex.path}")
        if rest == "runs":
            _allow(ex, "POST")
            await self._create_run(ex, session_id)
        elif ex.method == "GET":
            await self._get_session(ex, session_id)
        elif ex.method == "DELETE":
            await self._service.delete_session(session_id)
            await ex.respond(200, encode({"id": session_id, "object": "session", "deleted": True}))
        else:
            raise MethodNotAllowed(f"Method {ex.method} is not allowed", allow=b"DELETE, GET")

    async def runs(self, ex: Exchange) -> None:
        """``/v1/runs/{id}``, ``/v1/runs/{id}/stream`` and ``/v1/runs/{id}/cancel``."""
        run_id, _, rest = ex.path[len(RUNS_PREFIX) :].partition("/")
        if not run_id or rest not in ("", "stream", "cancel"):
            raise RouteNotFound(f"No route {ex.method} {ex.path}")
        if rest == "cancel":
            _allow(ex, "POST")
            await ex.respond(200, encode(_run(await self._service.cancel(run_id))))
        elif rest == "stream":
            _allow(ex, "GET")
            await self._stream(ex, await self._service.follow(run_id))
        else:
            _allow(ex, "GET")
            await ex.respond(200, encode(_run(await self._service.run(run_id))))

    async def _get_session(self, ex: Exchange, session_id: str) -> None:
        query = parse_qs(ex.scope.get("query_string", b"").decode("latin-1"))
        after = _int_param(query, "after", 0, 0, 2**62)
        limit = _int_param(query, "limit", 100, 1, _MAX_PAGE)
        session = await self._service.session(session_id)
        page = await self._service.history(session_id, after=after, limit=limit)
        body = _session(session)
        body["messages"] = [_message(m) for m in page]
        body["has_more"] = bool(page) and page[-1].seq < session.message_count
        await ex.respond(200, encode(body))

    async def _create_run(self, ex: Exchange, session_id: str) -> None:
        ex.require_json()
        raw = decode_object(await ex.read_body(self._limit))
        body = check(raw, RunBody)
        given = raw["input"]
        messages: list[Message] = (
            [{"role": "user", "content": given}] if isinstance(given, str) else given
        )
        key = _header(ex, _IDEMPOTENCY_HEADER)
        run = await self._service.submit(session_id, messages, idempotency_key=key)
        if body.mode == "background":
            await ex.respond(202, encode(_run(run)))
        elif body.mode == "stream":
            await self._stream(ex, await self._service.follow(run.id))
        else:
            finished = await self._service.finished(run.id)
            await ex.respond(200, encode(_run(finished.run, finished.usage)))

    async def _stream(self, ex: Exchange, events: AsyncIterator[RunEvent]) -> None:
        await ex.start_stream()
        async for event in events:
            await ex.write(_sse(event))
        await ex.end_stream()

    # ------------------------------------------------------------- chat completions

    async def chat_completion(
        self, ex: Exchange, raw: dict[str, Any], body: ChatCompletionBody
    ) -> None:
        """``POST /v1/chat/completions`` with ``"model": "agent/<name>"``."""
        session_id = _header(ex, _SESSION_HEADER)
        metadata = raw.get("metadata")
        if session_id is None and isinstance(metadata, dict):
            given = metadata.get("session_id")
            session_id = given if isinstance(given, str) and given else None
        messages: list[Message] = raw["messages"]
        model = body.model
        if not body.stream:
            finished = await self._service.chat(model, messages, session_id=session_id)
            completion = Completion(
                content=_answer(finished.run), usage=finished.usage, model=model
            )
            answer = chat_completion(
                completion, id_=new_id("chatcmpl"), created=int(time.time()), model=model
            )
            await ex.respond(200, encode(answer))
            return
        options = body.stream_options
        wants_usage = options is not None and bool(options.include_usage)
        events = self._service.chat_stream(model, messages, session_id=session_id)
        try:
            first = await anext(events)  # errors before the run is stored: a JSON error
            frame = _ChunkFramer(model)
            await ex.start_stream()
            await ex.write(frame.delta("", role=True))
            event: RunEvent | None = first
            while event is not None:
                if isinstance(event, TextDelta):
                    await ex.write(frame.delta(event.text))
                elif isinstance(event, RunFinished):
                    await self._finish_chunks(ex, frame, event, wants_usage)
                    return
                event = await anext(events, None)
        finally:
            await events.aclose()

    async def _finish_chunks(
        self, ex: Exchange, frame: _ChunkFramer, event: RunFinished, wants_usage: bool
    ) -> None:
        try:
            _answer(event.run)
        except WayportError as exc:
            ex.status = exc.status
            await ex.end_stream(sse_event(error_body(exc)))
            return
        await ex.write(frame.delta(None, finish="stop"))
        if wants_usage:
            await ex.write(frame.usage(event.usage))
        await ex.end_stream(DONE_EVENT)


class _ChunkFramer:
    __slots__ = ("_created", "_id", "_model")

    def __init__(self, model: str) -> None:
        self._id = new_id("chatcmpl")
        self._created = int(time.time())
        self._model = model

    def delta(self, text: str | None, *, role: bool = False, finish: str | None = None) -> bytes:
        delta = Delta(role="assistant" if role else None, content=text)
        return self._chunk([ChunkChoice(delta=delta, finish_reason=finish)], None)

    def usage(self, usage: Usage) -> bytes:
        return self._chunk([], usage)

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None) -> bytes:
        chunk = ChatCompletionChunk(
            id=self._id,
            object="chat.completion.chunk",
            created=self._created,
            model=self._model,
            choices=choices,
            usage=usage_body(usage) if usage is not None else None,
        )
        return sse_event(encode(chunk))


def _answer(run: Run) -> str | None:
    """The run's answer, or the error a chat-completions client should see."""
    if run.status is RunStatus.COMPLETED:
        output = run.output
        content = output.get("content") if isinstance(output, dict) else None
        return content if isinstance(content, str) else None
    if run.status is RunStatus.CANCELLED:
        raise Conflict(f"run {run.id} was cancelled", code="run_cancelled")
    raise BackendError(f"run {run.id} failed: {run.error}", code="run_failed")


def _allow(ex: Exchange, method: str) -> None:
    if ex.method != method:
        raise MethodNotAllowed(f"Method {ex.method} is not allowed", allow=method.encode())


def _header(ex: Exchange, name: bytes) -> str | None:
    for key, value in ex.scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1").strip()
            return text or None
    return None


def _int_param(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be an integer", param=name) from exc
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}", param=name)
    return value


def _session(s: Session) -> dict[str, Any]:
    return {
        "id": s.id,
        "object": "session",
        "agent": s.agent,
        "agent_version": s.agent_version,
        "metadata": dict(s.metadata),
        "message_count": s.message_count,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
    }


def _message(m: StoredMessage) -> dict[str, Any]:
    body: dict[str, Any] = {"seq": m.seq, **m.to_message(), "created_at": m.created_at}
    if m.run_id is not None:
        body["run_id"] = m.run_id
    return body


def _run(r: Run, usage: Usage | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": r.id,
        "object": "run",
        "session_id": r.session_id,
        "status": r.status.value,
        "output": r.output,
        "error": r.error,
        "agent_version": r.agent_version,
        "attempt": r.attempt,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
    }
    if usage is not None:
        body["usage"] = usage_body(usage)
    return body


def _sse(event: RunEvent) -> bytes:
    name: str
    data: dict[str, Any]
    if isinstance(event, TextDelta):
        name, data = "text.delta", {"run_id": event.run_id, "text": event.text}
    elif isinstance(event, ToolCalled):
        name, data = "tool.called", {"run_id": event.run_id, "call": event.call}
    elif isinstance(event, ToolReturned):
        name = "tool.returned"
        data = {
            "run_id": event.run_id,
            "call_id": event.call_id,
            "content": event.result.content,
            "is_error": event.result.is_error,
        }
    elif isinstance(event, RunFinished):
        name, data = "run.finished", {"run": _run(event.run, event.usage)}
    else:
        name, data = "run.started", {"run": _run(event.run)}
    data["type"] = name
    return b"event: " + name.encode() + b"\n" + sse_event(encode(data))
