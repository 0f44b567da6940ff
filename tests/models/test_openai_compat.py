"""OpenAICompatBackend against FakeUpstream over loopback: both directions of the wire
protocol, every fault mapped to its error, timeouts, and connection hygiene."""

from __future__ import annotations

import socket
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest

from wayport.core.errors import (
    BackendError,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    ContextWindowExceeded,
    UpstreamRateLimited,
    WayportError,
)
from wayport.core.types import ChatRequest, Chunk, EmbeddingRequest, ToolCall, ToolDef
from wayport.models._http import Timeouts, error_info, map_error, parse_retry_after
from wayport.models.openai_compat import OpenAICompatBackend
from wayport.testing.fake_upstream import FakeUpstream, Fault

pytestmark = pytest.mark.anyio

REQ = ChatRequest(model="chat", messages=[{"role": "user", "content": "say hello world"}])
TOOLS: list[ToolDef] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CALLS: list[ToolCall] = [
    {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
    },
    {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
]


@asynccontextmanager
async def open_backend(fake: FakeUpstream, **kwargs: Any) -> AsyncIterator[OpenAICompatBackend]:
    backend = OpenAICompatBackend(
        name="up", base_url=fake.openai_url, model="served-model", **kwargs
    )
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as server:
        yield server


@pytest.fixture
async def backend(fake: FakeUpstream) -> AsyncIterator[OpenAICompatBackend]:
    async with open_backend(fake) as b:
        yield b


async def collect(chunks: AsyncIterator[Chunk]) -> list[Chunk]:
    return [chunk async for chunk in chunks]


def assemble(chunks: Sequence[Chunk]) -> dict[int, dict[str, str]]:
    """Tool calls put back together from their streamed deltas, by index."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in chunk.tool_calls or ():
            call = calls.setdefault(delta["index"], {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.get("id", "")
            function = delta.get("function", {})
            call["name"] += function.get("name", "")
            call["arguments"] += function.get("arguments", "")
    return calls


# -- happy paths ----------------------------------------------------------------------------


async def test_complete_sends_openai_body_and_reads_answer(
    fake: FakeUpstream, backend: OpenAICompatBackend
) -> None:
    request = ChatRequest(
        model="chat",
        messages=[{"role": "system", "content": "be brief"}, *REQ.messages],
        params={"temperature": 0.2, "seed": 7, "model": "ignored", "stream_options": {"x": 1}},
        request_id="req-42",
    )
    answer = await backend.complete(request)
    assert answer.content == "say hello world"  # the fake echoes the last user message
    assert answer.finish_reason == "stop"
    assert answer.usage.prompt_tokens == 5
    assert answer.usage.completion_tokens == 3
    assert answer.model == "served-model"
    path, headers, body = fake.requests[-1]
    assert path == "/v1/chat/completions"
    assert headers["x-request-id"] == "req-42"
    assert body == {
        "temperature": 0.2,
        "seed": 7,
        "model": "served-model",
        "messages": list(request.messages),
        "stream": False,
    }


async def test_tools_go_up_and_tool_calls_come_back(
    fake: FakeUpstream, backend: OpenAICompatBackend
) -> None:
    fake.reply(text="", tool_calls=CALLS)
    request = ChatRequest(model="chat", messages=REQ.messages, tools=TOOLS, tool_choice="required")
    answer = await backend.complete(request)
    assert answer.tool_calls == CALLS
    assert answer.content is None
    assert answer.finish_reason == "tool_calls"
    body = fake.requests[-1].body
    assert body["tools"] == TOOLS
    assert body["tool_choice"] == "required"


async def test_tool_results_are_passed_through(
    fake: FakeUpstream, backend: OpenAICompatBackend
) -> None:
    history = [
        *REQ.messages,
        {"role": "assistant", "content": None, "tool_calls": CALLS[:1]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    await backend.complete(ChatRequest(model="chat", messages=history, tools=TOOLS))
    assert fake.requests[-1].body["messages"] == history


async def test_stream_yields_chunks_usage_and_finish(
    fake: FakeUpstream, backend: OpenAICompatBackend
) -> None:
    fake.reply(text="Hello from fake")
    chunks = await collect(backend.stream(REQ))
    assert chunks[0].role == "assistant"
    assert "".join(c.content or "" for c in chunks) == "Hello from fake"
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1
    assert usage[0].prompt_tokens == 3
    assert usage[0].completion_tokens == 3
    body = fake.requests[-1].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_stream_without_usage_option(fake: FakeUpstream) -> None:
    async with open_backend(fake, stream_usage=False) as backend:
        chunks = await collect(backend.stream(REQ))
    assert "stream_options" not in fake.requests[-1].body
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].finish_reason == "stop"


async def test_stream_tool_call_deltas(fake: FakeUpstream, backend: OpenAICompatBackend) -> None:
    fake.reply(text="", tool_calls=CALLS)
    chunks = await collect(
        backend.stream(ChatRequest(model="chat", messages=REQ.messages, tools=TOOLS))
    )
    assert assemble(chunks) == {
        i: {"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
        for i, c in enumerate(CALLS)
    }
    first = next(c for c in chunks if c.tool_calls)
    assert first.tool_calls is not None
    assert first.tool_calls[0]["type"] == "function"
    assert chunks[-2].finish_reason == "tool_calls"


async def test_embeddings(fake: FakeUpstream, backend: OpenAICompatBackend) -> None:
    result = await backend.embed(EmbeddingRequest(model="e", input=["ab", "abc d"]))
    assert [v[0] for v in result.vectors] == [2.0, 5.0]  # back in input order
    assert result.usage.prompt_tokens == 3
    path, _, body = fake.requests[-1]
    assert path == "/v1/embeddings"
    assert body == {"model": "served-model", "input": ["ab", "abc d"]}


async def test_embeddings_base64(backend: OpenAICompatBackend) -> None:
    result = await backend.embed(
        EmbeddingRequest(model="e", input="x", params={"encoding_format": "base64"})
    )
    assert len(result.vectors) == 1
    assert isinstance(result.vectors[0], str)


async def test_lifecycle(fake: FakeUpstream) -> None:
    backend = OpenAICompatBackend(name="up", base_url=fake.openai_url + "/", model="m")
    assert not backend.ready()
    with pytest.raises(BackendUnavailable, match="not started"):
        await backend.complete(REQ)
    await backend.start()
    await backend.start()
    assert backend.ready()
    assert (await backend.complete(REQ)).content == "say hello world"
    await backend.close()
    await backend.close()
    assert not backend.ready()


async def test_connection_is_reused_after_a_full_stream(fake: FakeUpstream) -> None:
    async with open_backend(fake, max_connections=1) as backend:
        await collect(backend.stream(REQ))
        await collect(backend.stream(REQ))
        await backend.complete(REQ)
    assert fake.connections == 1


# -- faults ---------------------------------------------------------------------------------


ERRORS: list[Any] = [
    pytest.param(Fault.status(503), BackendUnavailable, "upstream_unavailable", id="503"),
    pytest.param(Fault.status(500), BackendUnavailable, "upstream_unavailable", id="500"),
    pytest.param(Fault.status(502), BackendUnavailable, "upstream_unavailable", id="502"),
    pytest.param(Fault.status(504), BackendUnavailable, "upstream_unavailable", id="504"),
    pytest.param(Fault.status(501), BackendError, "upstream_error", id="501"),
    pytest.param(Fault.status(408), BackendTimeout, "upstream_timeout", id="408"),
    pytest.param(
        Fault.rate_limit(retry_after=2), UpstreamRateLimited, "upstream_rate_limited", id="429"
    ),
    pytest.param(Fault.status(401), BackendError, "upstream_auth", id="401"),
    pytest.param(Fault.status(403), BackendError, "upstream_auth", id="403"),
    pytest.param(
        Fault.status(400, code="context_length_exceeded"),
        ContextWindowExceeded,
        "context_length_exceeded",
        id="400-context-code",
    ),
    pytest.param(
        Fault.status(400, message="This model's maximum context length is 4096 tokens."),
        ContextWindowExceeded,
        "context_length_exceeded",
        id="400-context-message",
    ),
    pytest.param(
        Fault.status(400, code="invalid_value", message="temperature too high"),
        BackendRejected,
        "invalid_value",
        id="400",
    ),
    pytest.param(
        Fault.status(404, code="model_not_found"), BackendRejected, "model_not_found", id="404"
    ),
    pytest.param(Fault.status(422), BackendRejected, None, id="422"),
    pytest.param(Fault.reset(), BackendUnavailable, "upstream_unavailable", id="reset"),
    pytest.param(
        Fault.invalid_json(), BackendError, "upstream_invalid_response", id="invalid-json"
    ),
]


@pytest.mark.parametrize(("fault", "error", "code"), ERRORS)
async def test_complete_maps_faults(
    fake: FakeUpstream,
    backend: OpenAICompatBackend,
    fault: Fault,
    error: type[WayportError],
    code: str | None,
) -> None:
    fake.script(fault)
    with pytest.raises(error) as info:
        await backend.complete(REQ)
    assert type(info.value) is error
    assert info.value.code == code
    # the next request is unaffected
    assert (await backend.complete(REQ)).content == "say hello world"


@pytest.mark.parametrize(("fault", "error", "code"), ERRORS)
async def test_stream_raises_faults_from_first_anext(
    fake: FakeUpstream,
    backend: OpenAICompatBackend,
    fault: Fault,
    error: type[WayportError],
    code: str | None,
) -> None:
    fake.script(fault if fault.kind != "invalid_json" else Fault.invalid_json(after_chunks=0))
    chunks = backend.stream(REQ)
    with pytest.raises(error) as info:
        await anext(chunks)
    assert type(info.value) is error
    assert info.value.code == code


async def test_upstream_message_and_param_are_kept(
    fake: FakeUpstream, backend: OpenAICompatBackend
) -> None:
    fake.script(Fault.status(503, message="model is loading"))
    with pytest.raises(BackendUnavailable, match="model is loading"):
        await backend.complete(REQ)


@pytest.mark.parametrize(
    ("fault", "seconds"),
    [
        (Fault.rate_limit(retry_after=2), 2.0),
        (Fault.rate_limit(retry_after=0.5), 0.5),
        (Fault.rate_limit(retry_after_ms=1500), 1.5),
        (Fault.rate_limit(retry_after=30, retry_after_ms=250), 0.25),
        (Fault.rate_limit(retry_after="Wed, 21 Oct 2015 07:28:00 GMT"), 0.0),
        (Fault.rate_limit(), None),
    ],
)
async def test_retry_after(
    fake: FakeUpstream, backend: OpenAICompatBackend, fault: Fault, seconds: float | None
) -> None:
    fake.script(fault)
    with pytest.raises(UpstreamRateLimited) as info:
        await backend.complete(REQ)
    assert info.value.retry_after == seconds


async def test_retry_after_on_503(fake: FakeUpstream, backend: OpenAICompatBackend) -> None:
    fake.script(Fault.parse("status=503;retry_after=7"))
    with pytest.raises(BackendUnavailable) as info:
        await backend.complete(REQ)
    assert info.value.retry_after == 7.0


async def test_truncated_stream(fake: FakeUpstream, backend: OpenAICompatBackend) -> None:
    fake.script(Fault.truncate(after_chunks=2))
    got: list[Chunk] = []
    with pytest.raises(BackendError, match="upstream stream ended early") as info:
        async for chunk in backend.stream(REQ):
            got.append(chunk)
    assert info.value.code == "upstream_truncated"
    assert [c.content for c in got] == ["", "say "]


async def test_truncated_non_stream_body(fake: FakeUpstream, backend: OpenAICompatBackend) -> None:
    fake.script(Fault.truncate())
    with pytest.raises(BackendUnavailable):
        await backend.complete(REQ)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.stream_error(after_chunks=2, http_status=500), BackendUnavailable),
        (Fault.stream_error(after_chunks=2, http_status=429), UpstreamRateLimited),
        (Fault.stream_error(after_chunks=2, http_status=400), BackendRejected),
        (
            Fault.stream_error(after_chunks=2, http_status=400, code="context_length_exceeded"),
            ContextWindowExceeded,
        ),
        (Fault.reset(after_chunks=2), BackendUnavailable),
        (Fault.invalid_json(after_chunks=2), BackendError),
    ],
)
async def test_errors_mid_stream(
    fake: FakeUpstream, backend: OpenAICompatBackend, fault: Fault, error: type[WayportError]
) -> None:
    fake.script(fault)
    got: list[Chunk] = []
    with pytest.raises(error) as info:
        async for chunk in backend.stream(REQ):
            got.append(chunk)
    assert type(info.value) is error
    assert len(got) == 2


async def test_connection_refused(fake: FakeUpstream) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        backend = OpenAICompatBackend(name="up", base_url=f"http://127.0.0.1:{port}/v1", model="m")
        await backend.start()
        try:
            with pytest.raises(BackendUnavailable, match="cannot connect"):
                await backend.complete(REQ)
            with pytest.raises(BackendUnavailable):
                await anext(backend.stream(REQ))
        finally:
            await backend.close()


# -- timeouts and connections ---------------------------------------------------------------


async def test_first_byte_timeout(fake: FakeUpstream) -> None:
    async with open_backend(fake, first_byte_timeout=0.2) as backend:
        fake.script(Fault.hang())
        with pytest.raises(BackendTimeout):
            await backend.complete(REQ)
        fake.script(Fault.hang())
        with pytest.raises(BackendTimeout):
            await anext(backend.stream(REQ))
    await fake.wait_disconnects(2)


async def test_first_byte_timeout_covers_the_first_event(fake: FakeUpstream) -> None:
    async with open_backend(fake, first_byte_timeout=0.2) as backend:
        fake.script(Fault.hang(after_chunks=0))  # headers are sent, then nothing
        with pytest.raises(BackendTimeout):
            await anext(backend.stream(REQ))


async def test_deadline_argument_caps_timeouts(
    fake: FakeUpstream, backend: OpenAICompatBackend
) -> None:
    fake.script(Fault.hang())
    with pytest.raises(BackendTimeout):
        await backend.complete(REQ, timeout=0.2)
    with pytest.raises(BackendTimeout):
        await backend.complete(REQ, timeout=0)
    assert len(fake.requests) == 1  # no time left: nothing was sent


async def test_total_timeout_mid_stream(fake: FakeUpstream) -> None:
    async with open_backend(fake, total_timeout=0.3) as backend:
        fake.script(Fault.hang(after_chunks=2))
        got: list[Chunk] = []
        with pytest.raises(BackendTimeout):
            async for chunk in backend.stream(REQ):
                got.append(chunk)
        assert len(got) == 2


async def test_early_aclose_releases_the_connection(fake: FakeUpstream) -> None:
    async with open_backend(fake, max_connections=1) as backend:
        fake.script(Fault.hang(after_chunks=2))
        chunks = cast(AsyncGenerator[Chunk, None], backend.stream(REQ))
        assert (await anext(chunks)).role == "assistant"
        await chunks.aclose()
        await fake.wait_disconnects(1)
        # The pool has one connection: this only succeeds if the stream gave it back.
        assert (await backend.complete(REQ, timeout=10)).content == "say hello world"


# -- secrets --------------------------------------------------------------------------------


async def test_api_key_is_sent_but_never_in_errors() -> None:
    secret = "sk-test-0123456789abcdef"
    errors: list[WayportError] = []
    async with (
        FakeUpstream(api_key="sk-the-right-one") as fake,
        open_backend(fake, api_key=secret) as backend,
    ):
        with pytest.raises(BackendError) as info:
            await backend.complete(REQ)
        assert fake.requests[-1].headers["authorization"] == f"Bearer {secret}"
        assert "Incorrect API key provided: ***" in str(info.value)
        errors.append(info.value)
        fake.api_key = None
        for fault in (Fault.status(400, message=f"bad key {secret}"), Fault.reset(), Fault.hang()):
            fake.script(fault)
            with pytest.raises(WayportError) as info:
                await backend.complete(REQ, timeout=0.5)
            errors.append(info.value)
        assert secret not in repr(backend)
    assert len(errors) == 4
    for error in errors:
        for text in (str(error), repr(error), str(error.to_body())):
            assert secret not in text


# -- shared helpers (wayport.models._http) --------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": " 1.5 "}, 1.5),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "4"}, 4.0),
        ({"retry-after": "Thu, 01 Jan 1970 00:01:40 GMT"}, 40.0),  # now is 60
        ({"retry-after": "Thu, 01 Jan 1970 00:00:30 GMT"}, 0.0),  # already past
        ({"retry-after": "tomorrow-ish"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(headers, now=60.0) == seconds


@pytest.mark.parametrize(
    ("body", "error", "code"),
    [
        (
            {"error": {"message": "x", "type": "server_error"}},
            BackendUnavailable,
            "upstream_unavailable",
        ),
        (
            {"error": {"message": "x", "type": "BadRequestError", "code": 400}},
            BackendRejected,
            None,
        ),
        ({"error": {"message": "x", "code": 503}}, BackendUnavailable, "upstream_unavailable"),
        (
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            BackendUnavailable,
            "upstream_unavailable",
        ),
        (
            {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
            UpstreamRateLimited,
            "upstream_rate_limited",
        ),
        (
            {"error": {"message": "prompt is too long: 9 tokens > 8 maximum"}},
            ContextWindowExceeded,
            "context_length_exceeded",
        ),
        (
            {"error": {"message": "x", "code": "rate_limit_exceeded"}},
            UpstreamRateLimited,
            "upstream_rate_limited",
        ),
        ({"error": "something odd"}, BackendError, "upstream_error"),
        ("not an object", BackendError, "upstream_error"),
    ],
)
def test_errors_reported_inside_a_stream(
    body: object, error: type[WayportError], code: str | None
) -> None:
    mapped = map_error(backend="b", status=None, info=error_info(body, fallback="?"))
    assert type(mapped) is error
    assert mapped.code == code


def test_error_info_keeps_param() -> None:
    info = error_info(
        {"error": {"message": "bad", "param": "tools", "code": "invalid"}}, fallback="?"
    )
    mapped = map_error(backend="b", status=400, info=info)
    assert isinstance(mapped, BackendRejected)
    assert (mapped.param, mapped.code) == ("tools", "invalid")
    assert "bad" in mapped.message


def test_timeouts_are_capped_by_the_deadline() -> None:
    timeouts = Timeouts(connect=5, first_byte=60, total=600)
    assert timeouts.bound(None) == timeouts
    assert timeouts.bound(30) == Timeouts(connect=5, first_byte=30, total=30)
    assert timeouts.bound(2) == Timeouts(connect=2, first_byte=2, total=2)
    with pytest.raises(BackendTimeout):
        timeouts.bound(0)
    with pytest.raises(ConfigError):
        Timeouts(total=0)
