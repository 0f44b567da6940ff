"""The native agent routes, and the ``"model": "agent/<name>"`` branch of chat completions.

    GET    /v1/agents
    GET    /v1/agents/{name}            the current definition, its version and source
    PUT    /v1/agents/{name}            create or replace (an ``agents:`` entry's fields)
    DELETE /v1/agents/{name}            only agents made here; the file's answer 409
    POST   /v1/sessions                 {"agent": "assistant", "metadata": {...}}
    GET    /v1/sessions/{id}?after=0&limit=50   the session and a page of its history
    DELETE /v1/sessions/{id}
    POST   /v1/sessions/{id}/runs       {"input": "hi" | [messages], "mode": "wait"}
    GET    /v1/runs/{id}
    GET    /v1/runs/{id}/stream         SSE: the run's events (a finished run: its last one)
    POST   /v1/runs/{id}/cancel
    POST   /v1/runs/{id}/approve        {"approve": true | false, "reason": "…"}
    POST   /v1/runs/{id}/feedback       {"score": 1 | -1, "comment": "…"}   (with releases)

Runs answer ``{"id", "object": "run", "status", …}``: in ``mode`` ``wait`` (the default)
when finished (200), ``background`` at once (202), ``stream`` as server-sent events
(``event: text.delta`` …, last ``run.finished``). An ``Idempotency-Key`` header makes a
retried ``POST …/runs`` return the first run instead of starting another.
``background`` answers 202 with the run as it is at that moment: ``queued``, or already
``running`` (an idle session's run starts at once), or even finished.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, unquote

from msgspec import Meta, Struct

from wayport.core.agent import (
    AgentSpec,
    RunEvent,
    RunFinished,
    TextDelta,
    ToolCalled,
    ToolReturned,
)
from wayport.core.errors import BackendError, Conflict, InvalidRequest, WayportError
from wayport.core.ids import new_id
from wayport.core.session import Run, RunStatus, Session, StoredMessage
from wayport.core.types import Completion, Message, Usage
from wayport.server.errors import MethodNotAllowed, RouteNotFound, error_body
from wayport.server.http import DONE_EVENT, Exchange, sse_event
from wayport.server.release_routing import routing  # releases
from wayport.server.responses import (
    ChatCompletionChunk,
    ChunkChoice,
    Delta,
    chat_completion,
    encode,
    usage_body,
)
from wayport.server.usage_api import RunMeters, agent_info, begin_run, run_done  # limits, usage
from wayport.server.wire import ChatCompletionBody, MessageBody, check, decode_object
from wayport.service.agent_defs import AgentDefinition
from wayport.service.agents import AgentService
from wayport.service.metering import Metering  # limits and usage
from wayport.service.webhooks import WebhookTarget

AGENT_PREFIX = "/v1/agents/"  #: agent admin: ``/v1/agents/{name}``
SESSIONS_PREFIX = "/v1/sessions/"
RUNS_PREFIX = "/v1/runs/"
_SESSION_HEADER = b"x-wayport-session"
_IDEMPOTENCY_HEADER = b"idempotency-key"
_MAX_PAGE = 1000


class SessionBody(Struct, kw_only=True):
    agent: Annotated[str, Meta(min_length=1, max_length=256)]
    metadata: dict[str, Any] | None = None


_URL = r"^https?://[A-Za-z0-9._~%:@\[\]-]+([/?#]|$)"  #: an absolute http(s) URL, ASCII host


class WebhookBody(Struct, kw_only=True, forbid_unknown_fields=True):
    url: Annotated[str, Meta(min_length=8, max_length=2048, pattern=_URL)]
    secret: Annotated[str, Meta(min_length=16, max_length=256)] | None = None


class RunBody(Struct, kw_only=True):
    input: Annotated[str, Meta(min_length=1)] | Annotated[list[MessageBody], Meta(min_length=1)]
    mode: Literal["wait", "stream", "background"] = "wait"
    webhook: WebhookBody | None = None  #: POSTed the signed completion event


class ApproveBody(Struct, kw_only=True, forbid_unknown_fields=True):
    approve: bool
    reason: Annotated[str, Meta(max_length=2000)] | None = None


class AgentsApi:
    def __init__(
        self, service: AgentService, *, max_body_bytes: int, metering: Metering | None = None
    ) -> None:
        self._service = service
        self._limit = max_body_bytes
        self._metering = metering  # limits and usage
        self._meters = RunMeters(service.finished)
        #: releases: answers ``POST /v1/runs/{id}/feedback`` (set by the app when mounted)
        self.run_feedback: Callable[[Exchange, str], Awaitable[None]] | None = None
        #: agent admin: handles ``/v1/agents/{name}/…`` (releases: versions); None: 404
        self.deeper: Callable[[Exchange], Awaitable[None]] | None = None

    async def list_agents(self, ex: Exchange) -> None:
        await self._own_agents(ex.principal.tenant)
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
            for a in self._service.catalog.list(ex.principal.tenant)
        ]
        await ex.respond(200, encode({"object": "list", "data": data}))

    # ------------------------------------------------------------- agent admin

    async def agent(self, ex: Exchange) -> None:
        """``GET``/``PUT``/``DELETE /v1/agents/{name}``; deeper paths go to ``deeper``."""
        name, slash, _ = ex.path[len(AGENT_PREFIX) :].partition("/")
        if slash:
            if self.deeper is None or not name:
                raise RouteNotFound(f"No route {ex.method} {ex.path}")
            await self.deeper(ex)
            return
        if not name:
            raise RouteNotFound(f"No route {ex.method} {ex.path}")
        name = unquote(name)
        definitions = self._service.definitions
        if ex.method == "GET":
            if definitions is None:
                found = AgentDefinition(spec=self._service.catalog.get(name), source="config")
            else:
                found = await definitions.get(ex.principal.tenant, name)
            await ex.respond(200, encode(_agent(found)))
            return
        if ex.method not in ("PUT", "DELETE"):
            raise MethodNotAllowed(f"Method {ex.method} is not allowed", allow=b"DELETE, GET, PUT")
        if definitions is None:
            raise MethodNotAllowed("agents are defined in wayport.yaml only here", allow=b"GET")
        if ex.method == "DELETE":
            await definitions.delete(ex.principal, name)
            await ex.respond(200, encode({"id": name, "object": "agent", "deleted": True}))
            return
        ex.require_json()
        body = decode_object(await ex.read_body(self._limit))
        stored, created = await definitions.put(ex.principal, name, body)
        await ex.respond(201 if created else 200, encode(_agent(stored)))

    async def _own_agents(self, tenant: str) -> None:
        if self._service.definitions is not None:
            await self._service.definitions.refresh(tenant)

    async def create_session(self, ex: Exchange) -> None:
        ex.require_json()
        body = check(decode_object(await ex.read_body(self._limit)), SessionBody)
        session = await self._service.create_session(
            body.agent,
            metadata=body.metadata,
            tenant=ex.principal.tenant,
            preview=routing(ex).preview,  # releases
        )
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
            await self._service.delete_session(session_id, tenant=ex.principal.tenant)
            await ex.respond(200, encode({"id": session_id, "object": "session", "deleted": True}))
        else:
            raise MethodNotAllowed(f"Method {ex.method} is not allowed", allow=b"DELETE, GET")

    async def runs(self, ex: Exchange) -> None:
        """``/v1/runs/{id}``, ``/v1/runs/{id}/stream`` and ``/v1/runs/{id}/cancel``."""
        run_id, _, rest = ex.path[len(RUNS_PREFIX) :].partition("/")
        if not run_id or rest not in ("", "stream", "cancel", "approve", "feedback"):
            raise RouteNotFound(f"No route {ex.method} {ex.path}")
        if rest == "feedback":  # releases: ``POST /v1/runs/{id}/feedback``
            if self.run_feedback is None:
                raise RouteNotFound(f"No route {ex.method} {ex.path}")
            _allow(ex, "POST")
            await self.run_feedback(ex, run_id)
        elif rest == "approve":
            _allow(ex, "POST")
            ex.require_json()
            decision = check(decode_object(await ex.read_body(self._limit)), ApproveBody)
            run = await self._service.approve(
                run_id,
                approve=decision.approve,
                reason=decision.reason,
                tenant=ex.principal.tenant,
            )
            await ex.respond(200, encode(_run(run)))
        elif rest == "cancel":
            _allow(ex, "POST")
            run = await self._service.cancel(run_id, tenant=ex.principal.tenant)
            await ex.respond(200, encode(_run(run)))
        elif rest == "stream":
            _allow(ex, "GET")
            await self._stream(ex, await self._service.follow(run_id, tenant=ex.principal.tenant))
        else:
            _allow(ex, "GET")
            run = await self._service.run(run_id, tenant=ex.principal.tenant)
            await ex.respond(200, encode(_run(run)))

    async def _get_session(self, ex: Exchange, session_id: str) -> None:
        query = parse_qs(ex.scope.get("query_string", b"").decode("latin-1"))
        after = _int_param(query, "after", 0, 0, 2**62)
        limit = _int_param(query, "limit", 100, 1, _MAX_PAGE)
        tenant = ex.principal.tenant
        session = await self._service.session(session_id, tenant=tenant)
        page = await self._service.history(session_id, after=after, limit=limit, tenant=tenant)
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
        hook = body.webhook
        target = WebhookTarget(url=hook.url, secret=hook.secret) if hook is not None else None
        tenant = ex.principal.tenant
        meter = None  # limits and usage
        if self._metering is not None:
            session = await self._service.session(session_id, tenant=tenant)
            await self._own_agents(tenant)
            agent = agent_info(self._service.catalog.get(session.agent, tenant))
            meter = await begin_run(self._metering, ex, agent, messages)
        try:
            run = await self._service.submit(
                session_id,
                messages,
                idempotency_key=key,
                webhook=target,
                tenant=tenant,
                preview=routing(ex).preview,  # releases
            )
        except BaseException:
            if meter is not None:
                await meter.done(None, status="failed")
            raise
        self._meters.watch(meter, run.id, tenant)
        if body.mode == "background":
            await ex.respond(202, encode(_run(run)))
        elif body.mode == "stream":
            await self._stream(ex, await self._service.follow(run.id, tenant=tenant))
        else:
            finished = await self._service.finished(run.id, tenant=tenant)
            await run_done(meter, finished)
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
        release = routing(ex, body.user)  # releases: preview header, sticky user
        meter = None  # limits and usage
        if self._metering is not None:
            await self._own_agents(ex.principal.tenant)
            agent_spec = self._service.catalog.get(
                model.removeprefix("agent/"), ex.principal.tenant
            )
            agent = agent_info(agent_spec)
            meter = await begin_run(self._metering, ex, agent, messages)
        if not body.stream:
            try:
                finished = await self._service.chat(
                    model,
                    messages,
                    session_id=session_id,
                    tenant=ex.principal.tenant,
                    preview=release.preview,
                    user=release.user,
                )
            except BaseException:
                if meter is not None:
                    await meter.done(None, status="failed")
                raise
            await run_done(meter, finished)
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
        events = self._service.chat_stream(
            model,
            messages,
            session_id=session_id,
            tenant=ex.principal.tenant,
            preview=release.preview,
            user=release.user,
        )
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
                    await run_done(meter, event)
                    await self._finish_chunks(ex, frame, event, wants_usage)
                    return
                event = await anext(events, None)
        finally:
            await events.aclose()
            if meter is not None:  # ended early: once streaming, what it used is unknown
                await meter.done(None, status="failed", keep=ex.status == 200)

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


def _agent(d: AgentDefinition) -> dict[str, Any]:
    a: AgentSpec = d.spec
    return {
        "id": a.name,
        "object": "agent",
        "source": d.source,  #: "config" (wayport.yaml) or "api"
        "version": a.version,
        "revision": d.revision,
        "description": a.description,
        "instructions": a.instructions,
        "model": a.model,
        "params": dict(a.params),
        "tools": list(a.tools),
        "limits": asdict(a.limits),
        "context": asdict(a.context),
        "scope": a.scope.value,
        "queue_mode": a.queue_mode.value,
        "max_queue": a.max_queue,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
    }


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
