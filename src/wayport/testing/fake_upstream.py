"""A fake model server speaking both the OpenAI chat completions and the Anthropic Messages
wire protocols over real HTTP on loopback, with faults to inject on demand.

    async with FakeUpstream() as fake:                  # binds 127.0.0.1:0
        backend = OpenAICompatBackend(name="a", base_url=fake.openai_url, model="m")
        fake.reply(text="Hello from fake")              # else it echoes the last user message
        fake.script(Fault.status(503), Fault.rate_limit(retry_after=2))
        ...                                             # 1st request: 503, 2nd: 429, 3rd: answer
        path, headers, body = fake.requests[-1]

Each request takes the next scripted fault, if any. A request can also pick its own with the
header ``x-fake-fault`` (``Fault.header()`` writes it, e.g. ``"status=400;code=x"``), so tests
running side by side can target one request. ``fake.anthropic_url`` serves ``/v1/messages``.
The fake also checks what a real server would refuse (Anthropic's strict role alternation,
tool results that answer the previous tool calls, ``stream_options`` without ``stream``) so
that translation bugs show up as the 400s they would cause in production.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

from aiohttp import web

from wayport.core.types import ToolCall

__all__ = ["FakeUpstream", "Fault", "RecordedRequest"]

FaultKind = Literal[
    "status", "rate_limit", "reset", "hang", "truncate", "invalid_json", "stream_error"
]
Protocol = Literal["openai", "anthropic"]

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_OPENAI_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 429: "requests"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """What to do instead of (or in the middle of) a normal answer. Build with the
    constructors: ``Fault.status(503)``, ``Fault.rate_limit(retry_after=2)``, ``Fault.reset()``,
    ``Fault.hang()``, ``Fault.truncate(after_chunks=2)``, ``Fault.invalid_json()``,
    ``Fault.stream_error(after_chunks=1, http_status=529)``."""

    kind: FaultKind
    http_status: int = 500
    code: str | None = None
    message: str | None = None
    retry_after: float | str | None = None  #: seconds, or an HTTP-date sent verbatim
    retry_after_ms: float | None = None
    after_chunks: int = 0  #: stream events sent before the fault strikes

    @classmethod
    def status(cls, status: int, *, code: str | None = None, message: str | None = None) -> Fault:
        """Answer with this HTTP status and an error body in the protocol's shape."""
        return cls(kind="status", http_status=status, code=code, message=message)

    @classmethod
    def rate_limit(
        cls, retry_after: float | str | None = None, *, retry_after_ms: float | None = None
    ) -> Fault:
        """429 with ``Retry-After`` and/or ``retry-after-ms``."""
        return cls(
            kind="rate_limit",
            http_status=429,
            retry_after=retry_after,
            retry_after_ms=retry_after_ms,
        )

    @classmethod
    def reset(cls, after_chunks: int = 0) -> Fault:
        """Drop the connection: before any answer, or after some stream events."""
        return cls(kind="reset", after_chunks=after_chunks)

    @classmethod
    def hang(cls, after_chunks: int = 0) -> Fault:
        """Send nothing (more) until the client goes away or the fake shuts down."""
        return cls(kind="hang", after_chunks=after_chunks)

    @classmethod
    def truncate(cls, after_chunks: int = 1) -> Fault:
        """End the stream cleanly after some events, with no finish and no ``[DONE]``.
        A non-streamed answer is cut off mid-body instead."""
        return cls(kind="truncate", after_chunks=after_chunks)

    @classmethod
    def invalid_json(cls, after_chunks: int = 0) -> Fault:
        """Answer 200 with a body (or, in a stream, an event) that is not JSON."""
        return cls(kind="invalid_json", after_chunks=after_chunks)

    @classmethod
    def stream_error(
        cls, after_chunks: int = 1, *, http_status: int = 500, code: str | None = None
    ) -> Fault:
        """An error event in the middle of a stream, shaped as for ``http_status``."""
        return cls(
            kind="stream_error", after_chunks=after_chunks, http_status=http_status, code=code
        )

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """Read an ``x-fake-fault`` header: ``kind[=value][;key=value]…``, e.g.
        ``status=503``, ``rate_limit=2;retry_after_ms=1500``, ``truncate=2``, ``hang``."""
        head, *rest = (part.strip() for part in spec.split(";") if part.strip())
        kind, _, value = head.partition("=")
        if kind not in get_args(FaultKind):
            raise ValueError(f"unknown fault {kind!r}")
        fields: dict[str, Any] = {"kind": kind}
        if value:
            rest.insert(0, f"{_PRIMARY[kind]}={value}")
        for item in rest:
            key, _, val = item.partition("=")
            if key not in _FIELD_TYPES:
                raise ValueError(f"unknown fault field {key!r}")
            fields[key] = _FIELD_TYPES[key](val)
        return cls(**fields)

    def header(self) -> str:
        """This fault as an ``x-fake-fault`` header value (see ``parse``)."""
        parts: list[str] = [self.kind]
        for key in ("http_status", "code", "message", "retry_after", "retry_after_ms"):
            value = getattr(self, key)
            if value is not None and value != getattr(_DEFAULTS, key):
                parts.append(f"{key}={value}")
        if self.after_chunks:
            parts.append(f"after_chunks={self.after_chunks}")
        return ";".join(parts)


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


_DEFAULTS = Fault(kind="status")
_PRIMARY = {
    "status": "http_status",
    "rate_limit": "retry_after",
    "reset": "after_chunks",
    "hang": "after_chunks",
    "truncate": "after_chunks",
    "invalid_json": "after_chunks",
    "stream_error": "after_chunks",
}
_FIELD_TYPES: dict[str, Any] = {
    "http_status": int,
    "code": str,
    "message": str,
    "retry_after": _number,
    "retry_after_ms": float,
    "after_chunks": int,
}


class RecordedRequest(NamedTuple):
    path: str
    headers: dict[str, str]  #: lower-cased names
    body: Any  #: the decoded JSON body


@dataclass(frozen=True, slots=True, kw_only=True)
class _Answer:
    text: str
    tool_calls: Sequence[ToolCall]
    prompt_tokens: int
    completion_tokens: int


class _Rejected(Exception):
    """A request a real server would refuse with 400."""


class FakeUpstream:
    """See the module docstring. ``api_key`` makes it demand that key (401 otherwise)."""

    def __init__(self, *, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0  #: requests whose client went away while the fake was answering
        self._faults: deque[Fault] = deque()
        self._text: str | None = None
        self._tool_calls: Sequence[ToolCall] = ()
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self.port = 0
        self._peers: set[object] = set()

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """How many distinct client connections have sent requests (keep-alive shows here)."""
        return len(self._peers)

    def script(self, *faults: Fault) -> None:
        """Queue faults; each request takes the next one."""
        self._faults.extend(faults)

    def reply(self, text: str | None = None, tool_calls: Sequence[ToolCall] | None = None) -> None:
        """Set the normal answer (``text=None``: echo the last user message)."""
        self._text = text
        self._tool_calls = tuple(tool_calls or ())

    async def wait_disconnects(self, count: int = 1) -> None:
        """Wait until ``disconnects`` reaches ``count``."""
        await self._wait_for(lambda: self.disconnects >= count)

    async def wait_requests(self, count: int = 1) -> None:
        """Wait until ``count`` requests have arrived (before they are answered)."""
        await self._wait_for(lambda: len(self.requests) >= count)

    async def _wait_for(self, condition: Callable[[], bool]) -> None:
        if condition():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((condition, fut))
        await fut

    def _wake(self) -> None:
        for condition, fut in self._waiters:
            if not fut.done() and condition():
                fut.set_result(None)
        self._waiters = [(c, f) for c, f in self._waiters if not f.done()]

    async def __aenter__(self) -> FakeUpstream:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        # handler_cancellation: a hanging handler learns at once that its client is gone.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=5.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers ---------------------------------------------------------------------------

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, "openai")

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, "anthropic")

    async def _chat(self, request: web.Request, protocol: Protocol) -> web.StreamResponse:
        try:
            return await self._chat_inner(request, protocol)
        except asyncio.CancelledError:
            self._gone()  # handler_cancellation: the client closed the connection
            raise

    async def _chat_inner(self, request: web.Request, protocol: Protocol) -> web.StreamResponse:
        body, early = await self._accept(request, protocol)
        if early is not None:
            return early
        fault = self._fault(request)
        stream = bool(body.get("stream"))
        if fault is not None and _before_answer(fault, stream):
            return await self._fail(request, protocol, fault)
        try:
            _validate_openai(body) if protocol == "openai" else _validate_anthropic(request, body)
        except _Rejected as exc:
            return _error_response(protocol, Fault.status(400, message=str(exc)))
        answer = self._answer(body, protocol)
        model = str(body.get("model", "fake"))
        if not stream:
            if fault is not None and fault.kind == "invalid_json":
                return web.Response(body=b'{"choices": [', content_type="application/json")
            payload = (
                _openai_json(answer, model)
                if protocol == "openai"
                else _anthropic_json(answer, model)
            )
            if fault is not None and fault.kind == "truncate":
                return await self._cut_body(request, payload)
            return web.Response(body=payload, content_type="application/json")
        if protocol == "openai":
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            frames = _openai_frames(answer, model, usage)
        else:
            frames = _anthropic_frames(answer, model)
        return await self._stream(request, protocol, frames, fault)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._embeddings_inner(request)
        except asyncio.CancelledError:
            self._gone()
            raise

    async def _embeddings_inner(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._accept(request, "openai")
        if early is not None:
            return early
        fault = self._fault(request)
        if fault is not None:
            if fault.kind == "invalid_json":
                return web.Response(body=b'{"data": 1', content_type="application/json")
            return await self._fail(request, "openai", fault)
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        vectors = [[float(len(str(t))), float(sum(str(t).encode()) % 997), 1.0] for t in texts]
        as_b64 = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(struct.pack("<3f", *v)).decode() if as_b64 else v,
            }
            for i, v in reversed(list(enumerate(vectors)))  # order is the client's job
        ]
        tokens = sum(len(str(t).split()) for t in texts)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    # -- pieces -----------------------------------------------------------------------------

    async def _accept(
        self, request: web.Request, protocol: Protocol
    ) -> tuple[dict[str, Any], web.Response | None]:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.requests.append(RecordedRequest(request.path, headers, body))
        self._wake()
        if request.transport is not None:
            self._peers.add(request.transport.get_extra_info("peername"))
        if not isinstance(body, dict):
            return {}, _error_response(protocol, Fault.status(400, message="body is not JSON"))
        if self.api_key is not None:
            if protocol == "anthropic" and request.path == "/v1/messages":
                sent = headers.get("x-api-key", "")
            else:
                sent = headers.get("authorization", "").removeprefix("Bearer ")
            if sent != self.api_key:
                fault = Fault.status(401, message=f"Incorrect API key provided: {sent}")
                return body, _error_response(protocol, fault)
        return body, None

    def _fault(self, request: web.Request) -> Fault | None:
        spec = request.headers.get("x-fake-fault")
        if spec:
            return Fault.parse(spec)
        return self._faults.popleft() if self._faults else None

    async def _fail(
        self, request: web.Request, protocol: Protocol, fault: Fault
    ) -> web.StreamResponse:
        if fault.kind == "reset":
            if request.transport is not None:
                request.transport.abort()
            return await self._hold()
        if fault.kind == "hang":
            return await self._hold()
        return _error_response(protocol, fault)

    async def _hold(self) -> web.StreamResponse:
        await self._closing.wait()
        return web.Response(status=503, text="fake upstream shutting down")

    def _gone(self) -> None:
        self.disconnects += 1
        self._wake()

    async def _cut_body(self, request: web.Request, payload: bytes) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "application/json"})
        resp.content_length = len(payload)
        await resp.prepare(request)
        await resp.write(payload[: len(payload) // 2])
        if request.transport is not None:
            request.transport.close()
        return await self._hold()

    async def _stream(
        self, request: web.Request, protocol: Protocol, frames: list[bytes], fault: Fault | None
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        await resp.prepare(request)
        try:
            for frame in frames if fault is None else frames[: fault.after_chunks]:
                await resp.write(frame)
            if fault is None or fault.kind == "truncate":
                pass
            elif fault.kind == "invalid_json":
                await resp.write(b"data: {not json\n\n")
            elif fault.kind == "stream_error":
                await resp.write(_error_frame(protocol, fault))
            elif fault.kind == "reset":
                if request.transport is not None:
                    request.transport.close()
                await self._hold()
            else:  # hang: headers are out (as vLLM sends them before prefill), events are not
                await resp.write(b": fake upstream holding\n\n")
                await self._hold()
            await resp.write_eof()
        except ConnectionResetError:
            self._gone()
        return resp

    def _answer(self, body: dict[str, Any], protocol: Protocol) -> _Answer:
        messages = body.get("messages") or []
        text = self._text
        if text is None:
            text = next(
                (
                    _text_of(m.get("content"))
                    for m in reversed(messages)
                    if m.get("role") == "user" and _text_of(m.get("content"))
                ),
                "ok",
            )
        prompt = sum(len(_text_of(m.get("content")).split()) for m in messages)
        if protocol == "anthropic":
            prompt += len(_text_of(body.get("system")).split())
        return _Answer(
            text=text,
            tool_calls=self._tool_calls,
            prompt_tokens=prompt,
            completion_tokens=len(text.split()) + len(self._tool_calls),
        )


def _before_answer(fault: Fault, stream: bool) -> bool:
    """Whether the fault replaces the answer outright rather than striking inside it."""
    if fault.kind == "reset":
        return not stream or fault.after_chunks == 0
    if fault.kind in ("hang", "stream_error"):
        return not stream
    return fault.kind in ("status", "rate_limit")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


# -- validation (what the real servers refuse) ----------------------------------------------


def _validate_openai(body: dict[str, Any]) -> None:
    if not isinstance(body.get("model"), str):
        raise _Rejected("you must provide a model parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Rejected("'messages' must be a non-empty array")
    for m in messages:
        if m.get("role") not in ("system", "developer", "user", "assistant", "tool"):
            raise _Rejected(f"invalid role {m.get('role')!r}")
    if "stream_options" in body and not body.get("stream"):
        raise _Rejected("The 'stream_options' parameter is only allowed when 'stream' is enabled.")


def _validate_anthropic(request: web.Request, body: dict[str, Any]) -> None:
    if not request.headers.get("anthropic-version"):
        raise _Rejected("anthropic-version: header is required")
    if not isinstance(body.get("max_tokens"), int):
        raise _Rejected("max_tokens: Field required")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise _Rejected("system: Input should be a valid string or list")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Rejected("messages: at least one message is required")
    pending_tools: set[str] = set()
    last_role = None
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in ("user", "assistant"):
            raise _Rejected(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if role == last_role:
            raise _Rejected("messages: roles must alternate between 'user' and 'assistant'")
        last_role = role
        blocks = m.get("content")
        if isinstance(blocks, str):
            blocks = [{"type": "text", "text": blocks}]
        if not isinstance(blocks, list) or not blocks:
            raise _Rejected(f"messages.{i}: content must be non-empty")
        results = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
        if results != pending_tools:
            raise _Rejected(
                f"messages.{i}: tool_use ids {sorted(pending_tools)} need tool_result blocks "
                "immediately after, and only those"
            )
        pending_tools = {b.get("id") for b in blocks if b.get("type") == "tool_use"}
        for b in blocks:
            kind = b.get("type")
            if kind == "text" and not b.get("text"):
                raise _Rejected(f"messages.{i}: text content blocks must be non-empty")
            if kind == "tool_use" and not isinstance(b.get("input"), dict):
                raise _Rejected(f"messages.{i}: tool_use.input: Input should be a valid dictionary")
            if kind not in ("text", "image", "tool_use", "tool_result", "document"):
                raise _Rejected(f"messages.{i}: unknown content block type {kind!r}")


# -- wire shapes ----------------------------------------------------------------------------


def _finish(answer: _Answer, protocol: Protocol) -> str:
    if protocol == "openai":
        return "tool_calls" if answer.tool_calls else "stop"
    return "tool_use" if answer.tool_calls else "end_turn"


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]] if text else []


def _openai_usage(answer: _Answer) -> dict[str, int]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


def _openai_json(answer: _Answer, model: str) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
    if answer.tool_calls:
        message["tool_calls"] = list(answer.tool_calls)
    return json.dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": _finish(answer, "openai")}
            ],
            "usage": _openai_usage(answer),
        }
    ).encode()


def _openai_frames(answer: _Answer, model: str, include_usage: bool) -> list[bytes]:
    head = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model}

    def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return b"data: " + json.dumps({**head, "choices": [choice]}).encode() + b"\n\n"

    frames = [frame({"role": "assistant", "content": ""})]
    frames += [frame({"content": word}) for word in _words(answer.text)]
    for i, call in enumerate(answer.tool_calls):
        fn = call["function"]
        start = {"index": i, "id": call["id"], "type": "function"}
        frames.append(frame({"tool_calls": [{**start, "function": {"name": fn["name"]}}]}))
        half = len(fn["arguments"]) // 2
        for part in (fn["arguments"][:half], fn["arguments"][half:]):
            frames.append(frame({"tool_calls": [{"index": i, "function": {"arguments": part}}]}))
    frames.append(frame({}, _finish(answer, "openai")))
    if include_usage:
        usage = {**head, "choices": [], "usage": _openai_usage(answer)}
        frames.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
    frames.append(b"data: [DONE]\n\n")
    return frames


def _anthropic_json(answer: _Answer, model: str) -> bytes:
    content: list[dict[str, Any]] = [{"type": "text", "text": answer.text}] if answer.text else []
    for call in answer.tool_calls:
        fn = call["function"]
        content.append(
            {
                "type": "tool_use",
                "id": call["id"],
                "name": fn["name"],
                "input": json.loads(fn["arguments"] or "{}"),
            }
        )
    return json.dumps(
        {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": _finish(answer, "anthropic"),
            "stop_sequence": None,
            "usage": {
                "input_tokens": answer.prompt_tokens,
                "output_tokens": answer.completion_tokens,
            },
        }
    ).encode()


def _anthropic_frames(answer: _Answer, model: str) -> list[bytes]:
    def frame(kind: str, data: dict[str, Any]) -> bytes:
        return f"event: {kind}\r\ndata: {json.dumps({'type': kind, **data})}\r\n\r\n".encode()

    usage = {"input_tokens": answer.prompt_tokens, "output_tokens": 1}
    message: dict[str, Any] = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    frames = [frame("message_start", {"message": message}), frame("ping", {})]
    index = 0
    if answer.text:
        frames.append(
            frame(
                "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
            )
        )
        for word in _words(answer.text):
            frames.append(
                frame(
                    "content_block_delta",
                    {"index": 0, "delta": {"type": "text_delta", "text": word}},
                )
            )
        frames.append(frame("content_block_stop", {"index": 0}))
        index = 1
    for call in answer.tool_calls:
        fn = call["function"]
        block = {"type": "tool_use", "id": call["id"], "name": fn["name"], "input": {}}
        frames.append(frame("content_block_start", {"index": index, "content_block": block}))
        args = json.dumps(json.loads(fn["arguments"] or "{}"))
        half = len(args) // 2
        for part in (args[:half], args[half:]):
            delta = {"type": "input_json_delta", "partial_json": part}
            frames.append(frame("content_block_delta", {"index": index, "delta": delta}))
        frames.append(frame("content_block_stop", {"index": index}))
        index += 1
    stop: dict[str, Any] = {"stop_reason": _finish(answer, "anthropic"), "stop_sequence": None}
    frames.append(
        frame(
            "message_delta", {"delta": stop, "usage": {"output_tokens": answer.completion_tokens}}
        )
    )
    frames.append(frame("message_stop", {}))
    return frames


def _error_message(fault: Fault, protocol: Protocol) -> str:
    if fault.message:
        return fault.message
    if fault.code == "context_length_exceeded":
        if protocol == "anthropic":
            return "prompt is too long: 250000 tokens > 200000 maximum"
        return "This model's maximum context length is 8192 tokens. However, you requested 9000."
    return {429: "Rate limit reached", 503: "The server is overloaded or not ready yet."}.get(
        fault.http_status, f"fake upstream error {fault.http_status}"
    )


def _error_body(protocol: Protocol, fault: Fault) -> dict[str, Any]:
    message = _error_message(fault, protocol)
    if protocol == "anthropic":
        kind = _ANTHROPIC_TYPES.get(fault.http_status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    default = "invalid_request_error" if fault.http_status < 500 else "server_error"
    kind = _OPENAI_TYPES.get(fault.http_status, default)
    code = fault.code or ("rate_limit_exceeded" if fault.http_status == 429 else None)
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _error_response(protocol: Protocol, fault: Fault) -> web.Response:
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        value = fault.retry_after
        headers["retry-after"] = f"{value:g}" if isinstance(value, float | int) else value
    if fault.retry_after_ms is not None:
        headers["retry-after-ms"] = f"{fault.retry_after_ms:g}"
    return web.json_response(
        _error_body(protocol, fault), status=fault.http_status, headers=headers
    )


def _error_frame(protocol: Protocol, fault: Fault) -> bytes:
    body = json.dumps(_error_body(protocol, fault))
    if protocol == "anthropic":
        return f"event: error\ndata: {body}\n\n".encode()
    return f"data: {body}\n\n".encode()
