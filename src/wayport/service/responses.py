"""The Responses use case: one model answer (a plain model or an agent), stored so that a later
call continues it. No HTTP in here; ``wayport.server.responses_api`` translates.

    service = ResponsesService(gateway=gateway, agents=agents)     # agents: optional
    answer = await service.create(ResponseRequest(model="agent/assistant", messages=[...]))
    again = await service.create(ResponseRequest(model="agent/assistant", messages=[...],
                                                 previous_response_id=answer.id))
    async for piece in service.stream(request):   # str text deltas, then one Answer
        ...

**Where a response lives.** Each response chain is one stored session; the response id itself
says where in the store the response is, so no lookup table is needed and nothing extra is
written per response:

- ``agent/<name>``: the response *is* the agent run; its id is ``resp_<run id>``. The run row
  holds the session id, status, output and (through its steps) usage.
- a plain model: the chain is a session whose ``agent`` is ``model/<name>`` (no run, no worker
  involved); its id is ``resp_<session id>.<seq of the answer>``, and the answer's usage sits
  in the session metadata under that seq. Plain-model responses are stored only when an
  ``AgentService`` (hence a store) is configured and ``store`` is true.

``previous_response_id`` and ``conversation`` continue the *session*: chains are linear (a new
response follows the session's latest message, not a forked older one).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from wayport.core.agent import RunFinished, TextDelta
from wayport.core.errors import Conflict, InvalidRequest, ModelNotFound, NotFound
from wayport.core.ids import new_id
from wayport.core.session import DEFAULT_TENANT, Json, NewMessage, Run, RunStatus, Session
from wayport.core.types import ChatRequest, Message, ToolCall, ToolDef, Usage
from wayport.service.agent_defs import tenant_agent
from wayport.service.agents import AGENT_PREFIX, AgentService
from wayport.service.gateway import Gateway

RESPONSE_PREFIX = "resp_"
MODEL_SESSION_PREFIX = "model/"
_PAGE = 1000

AnswerStatus = Literal["completed", "failed", "in_progress", "cancelled", "queued"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseRequest:
    model: str
    messages: Sequence[Message]
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: str | None = None
    tools: Sequence[ToolDef] | None = None
    tool_choice: str | Mapping[str, Any] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)  #: max_tokens, temperature …
    store: bool = True
    request_id: str = ""
    tenant: str = DEFAULT_TENANT  #: whose sessions and runs it reads and writes
    preview: str | None = None  #: releases: the version asked for by the preview header
    user: str | None = None  #: releases: the sticky key of a new chain (default: its session)


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    id: str
    model: str
    status: AnswerStatus
    created_at: float
    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = None
    error: str | None = None
    conversation: str | None = None  #: the session id, when stored
    previous_response_id: str | None = None


class ResponsesService:
    def __init__(self, *, gateway: Gateway, agents: AgentService | None) -> None:
        self._gateway = gateway
        self._agents = agents

    async def create(self, request: ResponseRequest) -> Answer:
        answer: Answer | None = None
        async for piece in self.stream(request):
            if isinstance(piece, Answer):
                answer = piece
        assert answer is not None, "stream() always ends with an Answer"
        return answer

    async def stream(self, request: ResponseRequest) -> AsyncGenerator[str | Answer, None]:
        """Text deltas, then the ``Answer``. Errors before the model starts (unknown model or
        previous response, bad input) are raised from the first ``__anext__``."""
        if request.model.startswith(AGENT_PREFIX):
            inner = self._agent_stream(request)
        else:
            inner = self._model_stream(request)
        try:
            async for piece in inner:
                yield piece
        finally:
            await inner.aclose()

    async def get(self, response_id: str, *, tenant: str = DEFAULT_TENANT) -> Answer:
        run_id, session_id, seq = _parse(response_id)
        agents = self._agents
        if agents is None:
            raise _no_response(response_id)
        if run_id is not None:
            try:
                run = await agents.run(run_id, tenant=tenant)
            except NotFound as exc:
                raise _no_response(response_id) from exc
            session = await agents.session(run.session_id, tenant=tenant)
            finished = run.status.finished
            usage = (await agents.finished(run_id, tenant=tenant)).usage if finished else None
            return _run_answer(run, session.agent, usage)
        session = await self._model_session(session_id, response_id, tenant)
        page = await agents.stores.sessions.history(tenant, session.id, after=seq - 1, limit=1)
        if not page or page[0].seq != seq or page[0].role != "assistant":
            raise _no_response(response_id)
        message = page[0]
        content = message.content
        return Answer(
            id=response_id,
            model=session.agent.removeprefix(MODEL_SESSION_PREFIX),
            status="completed",
            created_at=message.created_at,
            text=content if isinstance(content, str) else None,
            tool_calls=message.tool_calls,
            usage=_stored_usage(session, seq),
            conversation=session.id,
        )

    # ------------------------------------------------------------------ agents

    async def _agent_stream(self, request: ResponseRequest) -> AsyncGenerator[str | Answer, None]:
        agents = self._agents
        if agents is None:
            raise ModelNotFound(f"The model {request.model!r} does not exist", param="model")
        name = request.model.removeprefix(AGENT_PREFIX)
        try:
            agent = await tenant_agent(agents, name, request.tenant)  # the tenant's own too
        except NotFound as exc:
            raise ModelNotFound(
                f"The model {request.model!r} does not exist", param="model"
            ) from exc
        if request.tools:
            raise InvalidRequest(
                "tools: an agent calls the tools it is configured with", param="tools"
            )
        session = await self._agent_session(request, agent.name)
        # an agent keeps its own instructions; system turns are not part of its history
        turn = [m for m in request.messages if m["role"] not in ("system", "developer")]
        if not turn:
            raise InvalidRequest("input: a user message is needed", param="input")
        run = await agents.submit(
            session.id,
            list(turn),
            tenant=request.tenant,
            preview=request.preview,
            sticky_key=request.user,  # a user's calls stay on one variant of an A/B split
        )
        async for event in await agents.follow(run.id, tenant=request.tenant):
            if isinstance(event, TextDelta):
                yield event.text
            elif isinstance(event, RunFinished):
                answer = _run_answer(event.run, agent.name, event.usage)
                yield _with_previous(answer, request.previous_response_id)

    async def _agent_session(self, request: ResponseRequest, agent: str) -> Session:
        agents = self._agents
        assert agents is not None
        if request.previous_response_id is not None:
            run_id, _, _ = _parse(request.previous_response_id)
            found = await agents.stores.runs.get(request.tenant, run_id) if run_id else None
            if found is None:
                raise _no_previous(request.previous_response_id)
            session = await agents.session(found.session_id, tenant=request.tenant)
        elif request.conversation is not None:
            try:
                session = await agents.session(request.conversation, tenant=request.tenant)
            except NotFound as exc:
                raise _no_conversation(request.conversation) from exc
        else:
            return await agents.create_session(
                agent, tenant=request.tenant, preview=request.preview, sticky_key=request.user
            )
        if session.agent != agent:
            raise Conflict(
                f"conversation {session.id} belongs to {session.agent!r}", code="session_agent"
            )
        return session

    # ------------------------------------------------------------------ plain models

    async def _model_stream(self, request: ResponseRequest) -> AsyncGenerator[str | Answer, None]:
        session = await self._prior_session(request)
        history: list[Message] = []
        if session is not None:
            history = await self._history(session.id, request.tenant)
        prompt: list[Message] = []
        if request.instructions:
            prompt.append({"role": "system", "content": request.instructions})
        chat = ChatRequest(
            model=request.model,
            messages=[*prompt, *history, *request.messages],
            stream=True,
            include_usage=True,
            tools=request.tools,
            tool_choice=request.tool_choice,
            params=request.params,
            request_id=request.request_id,
        )
        text: list[str] = []
        calls: dict[int, ToolCall] = {}
        usage = Usage()
        chunks = self._gateway.stream(chat)
        try:
            async for chunk in chunks:
                if chunk.content:
                    text.append(chunk.content)
                    yield chunk.content
                for delta in chunk.tool_calls or ():
                    _merge(calls, delta)
                if chunk.usage is not None:
                    usage = chunk.usage
        finally:
            await chunks.aclose()
        said = "".join(text) if text else None
        answer: Message = {"role": "assistant", "content": said}
        tool_calls = tuple(calls[i] for i in sorted(calls))
        if tool_calls:
            answer["tool_calls"] = list(tool_calls)
        response_id, conversation = await self._keep(request, session, answer, usage)
        yield Answer(
            id=response_id,
            model=request.model,
            status="completed",
            created_at=time.time(),
            text=said,
            tool_calls=tool_calls,
            usage=usage,
            conversation=conversation,
            previous_response_id=request.previous_response_id,
        )

    async def _prior_session(self, request: ResponseRequest) -> Session | None:
        if request.previous_response_id is not None:
            _, session_id, _ = _parse(request.previous_response_id)
            if self._agents is None or not session_id:
                raise _no_previous(request.previous_response_id)
            found = await self._agents.stores.sessions.get(request.tenant, session_id)
            if found is None:
                raise _no_previous(request.previous_response_id)
            return found
        if request.conversation is not None:
            if self._agents is None:
                raise _no_conversation(request.conversation)
            found = await self._agents.stores.sessions.get(request.tenant, request.conversation)
            if found is None:
                raise _no_conversation(request.conversation)
            return found
        return None

    async def _history(self, session_id: str, tenant: str) -> list[Message]:
        assert self._agents is not None
        sessions = self._agents.stores.sessions
        out: list[Message] = []
        after = 0
        while True:
            page = await sessions.history(tenant, session_id, after=after, limit=_PAGE)
            out += [m.to_message() for m in page]
            if len(page) < _PAGE:
                return out
            after = page[-1].seq

    async def _keep(
        self, request: ResponseRequest, session: Session | None, answer: Message, usage: Usage
    ) -> tuple[str, str | None]:
        """Store the turn and the answer; the response id (and session id) that find it."""
        agents = self._agents
        if agents is None or not (request.store or session is not None):
            return new_id("resp"), None
        sessions = agents.stores.sessions
        if session is None:
            session = await sessions.create(
                request.tenant, agent=MODEL_SESSION_PREFIX + request.model
            )
        new = [NewMessage(message=m) for m in request.messages]
        new.append(NewMessage(message=answer, tokens=usage.completion_tokens))
        stored = await sessions.append(request.tenant, session.id, new)
        seq = stored[-1].seq
        kept = dict(session.metadata)
        usages = kept.get("usage")
        by_seq: dict[str, Json] = dict(usages) if isinstance(usages, dict) else {}
        by_seq[str(seq)] = [usage.prompt_tokens, usage.completion_tokens]
        kept["usage"] = by_seq
        await sessions.update(request.tenant, session.id, metadata=kept)
        return f"{RESPONSE_PREFIX}{session.id}.{seq}", session.id

    async def _model_session(
        self, session_id: str | None, response_id: str, tenant: str
    ) -> Session:
        assert self._agents is not None
        found = await self._agents.stores.sessions.get(tenant, session_id) if session_id else None
        if found is None or not found.agent.startswith(MODEL_SESSION_PREFIX):
            raise _no_response(response_id)
        return found


def _parse(response_id: str) -> tuple[str | None, str | None, int]:
    """``resp_<run id>`` -> (run id, None, 0); ``resp_<session id>.<seq>`` -> (None, id, seq);
    anything else -> (None, None, 0)."""
    if not response_id.startswith(RESPONSE_PREFIX):
        return None, None, 0
    rest = response_id[len(RESPONSE_PREFIX) :]
    session_id, dot, seq = rest.rpartition(".")
    if dot and seq.isdigit() and session_id:
        return None, session_id, int(seq)
    return (rest or None), None, 0


def _run_answer(run: Run, agent: str, usage: Usage | None) -> Answer:
    output = run.output
    content = output.get("content") if isinstance(output, dict) else None
    status: AnswerStatus
    if run.status is RunStatus.QUEUED:
        status = "queued"
    elif run.status.finished:
        status = cast(AnswerStatus, run.status.value)
    else:
        status = "in_progress"
    return Answer(
        id=RESPONSE_PREFIX + run.id,
        model=AGENT_PREFIX + agent,
        status=status,
        created_at=run.created_at,
        text=content if isinstance(content, str) else None,
        usage=usage,
        error=run.error,
        conversation=run.session_id,
    )


def _with_previous(answer: Answer, previous: str | None) -> Answer:
    if previous is None:
        return answer
    return Answer(
        id=answer.id,
        model=answer.model,
        status=answer.status,
        created_at=answer.created_at,
        text=answer.text,
        tool_calls=answer.tool_calls,
        usage=answer.usage,
        error=answer.error,
        conversation=answer.conversation,
        previous_response_id=previous,
    )


def _stored_usage(session: Session, seq: int) -> Usage | None:
    usages = session.metadata.get("usage")
    pair = usages.get(str(seq)) if isinstance(usages, dict) else None
    if isinstance(pair, list) and len(pair) == 2:
        return Usage(
            prompt_tokens=int(cast(int, pair[0])), completion_tokens=int(cast(int, pair[1]))
        )
    return None


def _merge(calls: dict[int, ToolCall], delta: Mapping[str, Any]) -> None:
    """Fold one streamed tool-call fragment into the call it belongs to."""
    index = int(delta.get("index", 0))
    call = calls.setdefault(
        index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if delta.get("id"):
        call["id"] = delta["id"]
    function = delta.get("function") or {}
    target = call["function"]
    if function.get("name"):
        target["name"] = function["name"]
    target["arguments"] = target.get("arguments", "") + (function.get("arguments") or "")


def _no_response(response_id: str) -> NotFound:
    return NotFound(f"The response {response_id!r} does not exist", code="response_not_found")


def _no_previous(response_id: str) -> NotFound:
    return NotFound(
        f"The response {response_id!r} does not exist",
        param="previous_response_id",
        code="response_not_found",
    )


def _no_conversation(conversation: str) -> NotFound:
    return NotFound(
        f"The conversation {conversation!r} does not exist",
        param="conversation",
        code="conversation_not_found",
    )
