"""AnthropicBackend against FakeUpstream's Messages API: request translation, answers and
streams translated back, faults, error events, timeouts, connection hygiene."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest

from wayport.core.errors import (
    BackendError,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    ContextWindowExceeded,
    Unsupported,
    UpstreamRateLimited,
    WayportError,
)
from wayport.core.types import ChatRequest, Chunk, EmbeddingRequest, Message, ToolCall, ToolDef
from wayport.models.anthropic import AnthropicBackend, to_anthropic
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
    },
    {"type": "function", "function": {"name": "now"}},
]
CALLS: list[ToolCall] = [
    {
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
    },
    {"id": "toolu_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
]
HISTORY: list[Message] = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "user", "content": [{"type": "text", "text": "And the time?"}]},
    {"role": "assistant", "content": "Checking.", "tool_calls": CALLS},
    {"role": "tool", "tool_call_id": "toolu_1", "content": "12C, rain"},
    {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "09:00"}]},
    {"role": "user", "content": "Thanks, summarise."},
]


@asynccontextmanager
async def open_backend(fake: FakeUpstream, **kwargs: Any) -> AsyncIterator[AnthropicBackend]:
    kwargs.setdefault("api_key", "sk-ant-test")
    backend = AnthropicBackend(
        name="claude", model="claude-test", base_url=fake.anthropic_url, **kwargs
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
async def backend(fake: FakeUpstream) -> AsyncIterator[AnthropicBackend]:
    async with open_backend(fake) as b:
        yield b


async def collect(chunks: AsyncIterator[Chunk]) -> list[Chunk]:
    return [chunk async for chunk in chunks]


def assemble(chunks: Sequence[Chunk]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in chunk.tool_calls or ():
            call = calls.setdefault(delta["index"], {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.get("id", "")
            function = delta.get("function", {})
            call["name"] += function.get("name", "")
            call["arguments"] += function.get("arguments", "")
    return calls


# -- translation ----------------------------------------------------------------------------


def test_translation_of_a_tool_conversation() -> None:
    request = ChatRequest(
        model="chat",
        messages=HISTORY,
        tools=TOOLS,
        params={
            "max_completion_tokens": 300,
            "temperature": 0.3,
            "top_p": 0.9,
            "stop": "END",
            "user": "u-1",
            "seed": 5,
            "response_format": {"type": "text"},
        },
    )
    assert to_anthropic(request, model="claude-x") == {
        "model": "claude-x",
        "max_tokens": 300,
        "system": "Be brief.\n\nUse metric units.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in Oslo?"},
                    {"type": "text", "text": "And the time?"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    },
                    {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "12C, rain"}],
                    },
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [{"type": "text", "text": "09:00"}],
                    },
                    {"type": "text", "text": "Thanks, summarise."},
                ],
            },
        ],
        "temperature": 0.3,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
        "tools": [
            {
                "name": "get_weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
                "description": "Weather for a city",
            },
            {"name": "now", "input_schema": {"type": "object", "properties": {}}},
        ],
    }


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        ({"type": "function", "function": {"name": "now"}}, None, {"type": "tool", "name": "now"}),
        (None, None, None),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ],
)
def test_tool_choice(choice: Any, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    params = {} if parallel is None else {"parallel_tool_calls": parallel}
    body = to_anthropic(
        ChatRequest(
            model="c", messages=REQ.messages, tools=TOOLS, tool_choice=choice, params=params
        ),
        model="m",
    )
    assert body.get("tool_choice") == expected


@pytest.mark.parametrize(
    ("params", "max_tokens"),
    [({}, 1024), ({"max_tokens": 50}, 50), ({"max_completion_tokens": 70}, 70)],
)
def test_max_tokens(params: dict[str, Any], max_tokens: int) -> None:
    body = to_anthropic(ChatRequest(model="c", messages=REQ.messages, params=params), model="m")
    assert body["max_tokens"] == max_tokens


def test_stop_list_and_images() -> None:
    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    request = ChatRequest(
        model="c", messages=[{"role": "user", "content": parts}], params={"stop": ["a", "b"]}
    )
    body = to_anthropic(request, model="m", default_max_tokens=9)
    assert body["stop_sequences"] == ["a", "b"]
    assert body["max_tokens"] == 9
    assert body["messages"][0]["content"][1:] == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}, Unsupported),
        (
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                ],
            },
            BackendRejected,
        ),
        (
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                ],
            },
            BackendRejected,
        ),
    ],
)
def test_untranslatable_requests(message: Any, error: type[WayportError]) -> None:
    with pytest.raises(error):
        to_anthropic(ChatRequest(model="c", messages=[*REQ.messages, message]), model="m")


# -- over the wire --------------------------------------------------------------------------


async def test_complete(fake: FakeUpstream, backend: AnthropicBackend) -> None:
    answer = await backend.complete(REQ)
    assert answer.content == "say hello world"
    assert answer.finish_reason == "stop"
    assert answer.usage.prompt_tokens == 3
    assert answer.usage.completion_tokens == 3
    assert answer.model == "claude-test"
    path, headers, body = fake.requests[-1]
    assert path == "/v1/messages"
    assert headers["x-api-key"] == "sk-ant-test"
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers
    assert body == {
        "model": "claude-test",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "say hello world"}]}],
    }


async def test_tool_conversation_is_accepted_and_tool_calls_come_back(
    fake: FakeUpstream, backend: AnthropicBackend
) -> None:
    fake.reply(text="Let me look.", tool_calls=CALLS)
    # The fake refuses what Anthropic refuses: unmerged turns, unanswered tool_use ids …
    answer = await backend.complete(ChatRequest(model="c", messages=HISTORY, tools=TOOLS))
    assert answer.content == "Let me look."
    assert answer.finish_reason == "tool_calls"
    assert answer.tool_calls == CALLS
    assert fake.requests[-1].body["system"] == "Be brief.\n\nUse metric units."


async def test_stream(fake: FakeUpstream, backend: AnthropicBackend) -> None:
    fake.reply(text="Hello from fake")
    chunks = await collect(backend.stream(REQ))
    assert chunks[0].role == "assistant"
    assert "".join(c.content or "" for c in chunks) == "Hello from fake"
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1
    assert (usage[0].prompt_tokens, usage[0].completion_tokens) == (3, 3)
    assert fake.requests[-1].body["stream"] is True


async def test_stream_tool_calls_are_indexed_over_tool_blocks(
    fake: FakeUpstream, backend: AnthropicBackend
) -> None:
    fake.reply(text="Checking.", tool_calls=CALLS)  # block 0 is text; tools are blocks 1 and 2
    chunks = await collect(backend.stream(ChatRequest(model="c", messages=HISTORY, tools=TOOLS)))
    assert assemble(chunks) == {
        0: {"id": "toolu_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        1: {"id": "toolu_2", "name": "now", "arguments": "{}"},
    }
    assert chunks[-1].finish_reason == "tool_calls"
    assert "".join(c.content or "" for c in chunks) == "Checking."


async def test_embed_is_unsupported(backend: AnthropicBackend) -> None:
    with pytest.raises(Unsupported):
        await backend.embed(EmbeddingRequest(model="e", input="x"))


async def test_lifecycle(fake: FakeUpstream) -> None:
    backend = AnthropicBackend(name="c", model="m", base_url=fake.anthropic_url)
    assert not backend.ready()
    await backend.start()
    assert backend.ready()
    assert (await backend.complete(REQ)).content == "say hello world"
    await backend.close()
    await backend.close()
    assert not backend.ready()


# -- faults ---------------------------------------------------------------------------------


ERRORS: list[Any] = [
    pytest.param(Fault.status(529), BackendUnavailable, id="529-overloaded"),
    pytest.param(Fault.status(500), BackendUnavailable, id="500"),
    pytest.param(Fault.status(503), BackendUnavailable, id="503"),
    pytest.param(Fault.rate_limit(retry_after=3), UpstreamRateLimited, id="429"),
    pytest.param(Fault.status(401), BackendError, id="401"),
    pytest.param(
        Fault.status(400, code="context_length_exceeded"), ContextWindowExceeded, id="context"
    ),
    pytest.param(Fault.status(400, message="max_tokens: too large"), BackendRejected, id="400"),
    pytest.param(Fault.status(413), BackendRejected, id="413"),
    pytest.param(Fault.reset(), BackendUnavailable, id="reset"),
    pytest.param(Fault.invalid_json(), BackendError, id="invalid-json"),
]


@pytest.mark.parametrize(("fault", "error"), ERRORS)
async def test_complete_maps_faults(
    fake: FakeUpstream, backend: AnthropicBackend, fault: Fault, error: type[WayportError]
) -> None:
    fake.script(fault)
    with pytest.raises(error) as info:
        await backend.complete(REQ)
    assert type(info.value) is error
    if fault.http_status == 401:
        assert info.value.code == "upstream_auth"
    if fault.kind == "rate_limit":
        assert info.value.retry_after == 3.0
    if fault.kind == "invalid_json":
        assert info.value.code == "upstream_invalid_response"
    assert (await backend.complete(REQ)).content == "say hello world"


@pytest.mark.parametrize(("fault", "error"), ERRORS)
async def test_stream_raises_faults_from_first_anext(
    fake: FakeUpstream, backend: AnthropicBackend, fault: Fault, error: type[WayportError]
) -> None:
    fake.script(fault)
    with pytest.raises(error) as info:
        await anext(backend.stream(REQ))
    assert type(info.value) is error


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (529, BackendUnavailable),  # overloaded_error
        (500, BackendUnavailable),  # api_error
        (429, UpstreamRateLimited),  # rate_limit_error
        (400, BackendRejected),  # invalid_request_error
    ],
)
async def test_error_event_mid_stream(
    fake: FakeUpstream, backend: AnthropicBackend, status: int, error: type[WayportError]
) -> None:
    fake.script(Fault.stream_error(after_chunks=4, http_status=status))
    got: list[Chunk] = []
    with pytest.raises(error) as info:
        async for chunk in backend.stream(REQ):
            got.append(chunk)
    assert type(info.value) is error
    assert [c.content for c in got] == [None, "say "]  # message_start, ping, block start, delta


async def test_truncated_stream(fake: FakeUpstream, backend: AnthropicBackend) -> None:
    fake.script(Fault.truncate(after_chunks=5))
    got: list[Chunk] = []
    with pytest.raises(BackendError, match="upstream stream ended early") as info:
        async for chunk in backend.stream(REQ):
            got.append(chunk)
    assert info.value.code == "upstream_truncated"
    assert "".join(c.content or "" for c in got) == "say hello "


async def test_stream_without_message_stop_but_finished_is_complete(
    fake: FakeUpstream, backend: AnthropicBackend
) -> None:
    fake.reply(text="one two")  # 8 events: the last is message_stop
    fake.script(Fault.truncate(after_chunks=7))
    chunks = await collect(backend.stream(REQ))
    assert chunks[-1].finish_reason == "stop"


async def test_timeouts(fake: FakeUpstream) -> None:
    async with open_backend(fake, first_byte_timeout=0.2) as backend:
        fake.script(Fault.hang(), Fault.hang())
        with pytest.raises(BackendTimeout):
            await backend.complete(REQ)
        with pytest.raises(BackendTimeout):
            await anext(backend.stream(REQ))
    async with open_backend(fake, total_timeout=0.3) as backend:
        fake.script(Fault.hang(after_chunks=4))
        got: list[Chunk] = []
        with pytest.raises(BackendTimeout):
            async for chunk in backend.stream(REQ):
                got.append(chunk)
        assert len(got) == 2
    await fake.wait_disconnects(3)


async def test_early_aclose_releases_the_connection(fake: FakeUpstream) -> None:
    async with open_backend(fake, max_connections=1) as backend:
        fake.script(Fault.hang(after_chunks=4))
        chunks = cast(AsyncGenerator[Chunk, None], backend.stream(REQ))
        assert (await anext(chunks)).role == "assistant"
        await chunks.aclose()
        await fake.wait_disconnects(1)
        assert (await backend.complete(REQ, timeout=10)).content == "say hello world"


async def test_api_key_is_never_in_errors() -> None:
    secret = "sk-ant-secret-0123456789"
    errors: list[WayportError] = []
    async with (
        FakeUpstream(api_key="sk-ant-right") as fake,
        open_backend(fake, api_key=secret) as backend,
    ):
        with pytest.raises(BackendError) as info:
            await backend.complete(REQ)
        assert info.value.code == "upstream_auth"
        assert fake.requests[-1].headers["x-api-key"] == secret
        errors.append(info.value)
        fake.api_key = None
        fake.script(Fault.stream_error(after_chunks=1, http_status=500))
        with pytest.raises(BackendUnavailable) as info:
            await collect(backend.stream(REQ))
        errors.append(info.value)
        assert secret not in repr(backend)
    for error in errors:
        assert secret not in str(error)
        assert secret not in str(error.to_body())
