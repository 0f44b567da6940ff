"""Compatibility: the official ``openai`` client, unchanged, against a real uvicorn server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import openai
import pytest
from openai import AsyncOpenAI

from wayport.core.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    UpstreamRateLimited,
)
from wayport.core.types import ToolCall, Usage
from wayport.testing import Fail, Reply, ScriptedBackend
from wayport.testing.models import Step

from .helpers import KEY, Stack, build_stack, serve

pytestmark = pytest.mark.anyio

WEATHER_CALL: ToolCall = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
USER = [{"role": "user", "content": "hello there"}]


def make_stack(*script: Step) -> Stack:
    """``chat`` answers ``script`` first, then "Hello from Wayport"; ``embed`` embeds."""
    return build_stack(
        {
            "chat": ScriptedBackend("chat-1", script, default=Reply("Hello from Wayport")),
            "embed": ScriptedBackend("embed-1", embeddings=True),
        }
    )


@asynccontextmanager
async def connect(stack: Stack, key: str = KEY) -> AsyncIterator[AsyncOpenAI]:
    async with (
        serve(stack.app) as url,
        AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0) as c,
    ):
        yield c


@pytest.fixture
async def stack() -> Stack:
    return make_stack()


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[AsyncOpenAI]:
    async with connect(stack) as c:
        yield c


async def test_completion(client: AsyncOpenAI, stack: Stack) -> None:
    answer = await client.chat.completions.create(model="chat", messages=USER)
    assert answer.id.startswith("chatcmpl-")
    assert answer.object == "chat.completion"
    assert answer.model == "chat"
    assert answer.created > 0
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == "Hello from Wayport"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (2, 3)
    assert answer.usage.total_tokens == 5


async def test_generation_params_reach_the_backend(client: AsyncOpenAI, stack: Stack) -> None:
    await client.chat.completions.create(
        model="chat",
        messages=USER,
        temperature=0.5,
        max_tokens=7,
        extra_body={"top_k": 3, "vendor_flag": {"x": 1}},
    )
    request = stack.scripted("chat").calls[-1]
    assert request.params["temperature"] == 0.5
    assert request.params["max_tokens"] == 7
    assert request.params["top_k"] == 3
    assert request.params["vendor_flag"] == {"x": 1}
    assert "model" not in request.params
    assert "messages" not in request.params
    assert request.messages == USER
    assert request.request_id.startswith("req-")


async def test_stream_with_usage(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="chat",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.id == chunks[0].id and c.id.startswith("chatcmpl-") for c in chunks)
    assert all(c.model == "chat" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from Wayport"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 5


async def test_stream_without_usage_sends_none(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="chat",
        messages=USER,
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


async def test_tool_calls() -> None:
    stack = make_stack(Reply("", tool_calls=[WEATHER_CALL]))
    async with connect(stack) as client:
        answer = await client.chat.completions.create(
            model="chat",
            messages=USER,
            tools=[WEATHER_TOOL],
            tool_choice="auto",
        )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id == "call_1"
    assert call.function.name == "get_weather"
    assert call.function.arguments == '{"city": "Oslo"}'
    request = stack.scripted("chat").calls[-1]
    assert request.tools == [WEATHER_TOOL]
    assert request.tool_choice == "auto"


async def test_streamed_tool_calls() -> None:
    async with connect(make_stack(Reply("", tool_calls=[WEATHER_CALL]))) as client:
        stream = await client.chat.completions.create(
            model="chat",
            messages=USER,
            tools=[WEATHER_TOOL],
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) == 1
    assert deltas[0].index == 0
    assert deltas[0].id == "call_1"
    assert deltas[0].function is not None
    assert deltas[0].function.name == "get_weather"
    assert deltas[0].function.arguments == '{"city": "Oslo"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_tool_result_round_trip(client: AsyncOpenAI, stack: Stack) -> None:
    messages = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    await client.chat.completions.create(model="chat", messages=messages)
    assert stack.scripted("chat").calls[-1].messages == messages


async def test_models(client: AsyncOpenAI) -> None:
    listed = [m.id async for m in client.models.list()]
    assert listed == ["chat", "embed"]
    model = await client.models.retrieve("embed")
    assert model.id == "embed"
    assert model.object == "model"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("nope")


async def test_embeddings_base64_default(client: AsyncOpenAI) -> None:
    # The client asks for base64 unless told otherwise, and decodes it itself.
    result = await client.embeddings.create(model="embed", input=["a", "bbb"])
    assert [d.embedding for d in result.data] == [[1.0, 1.0, 0.0], [3.0, 1.0, 0.0]]
    assert result.model == "embed"
    assert result.usage.prompt_tokens == 2


async def test_embeddings_float(client: AsyncOpenAI) -> None:
    result = await client.embeddings.create(model="embed", input="abcd", encoding_format="float")
    assert result.data[0].embedding == [4.0, 1.0, 0.0]


async def test_embeddings_unsupported(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.embeddings.create(model="chat", input="x")
    assert caught.value.code == "unsupported"


async def test_bad_key(stack: Stack) -> None:
    async with connect(stack, key="wrong") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="chat", messages=USER)


async def test_unknown_model(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="gpt-nope", messages=USER)
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 2}, "n"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0]"),
        ({"temperature": 9}, "temperature"),
    ],
)
async def test_bad_request(client: AsyncOpenAI, body: dict[str, object], param: str) -> None:
    args: dict[str, object] = {"model": "chat", "messages": USER, **body}
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(**args)
    assert caught.value.param is not None
    assert caught.value.param.startswith(param)


@pytest.mark.parametrize(
    ("error", "exc_type", "status"),
    [
        (UpstreamRateLimited("slow down", retry_after=3), openai.RateLimitError, 429),
        (BackendError("bad gateway"), openai.APIStatusError, 502),
        (BackendUnavailable("down"), openai.APIStatusError, 503),
        (BackendTimeout("too slow"), openai.APIStatusError, 504),
    ],
)
async def test_backend_errors(
    error: BackendError, exc_type: type[openai.APIStatusError], status: int
) -> None:
    async with connect(make_stack(Fail(error))) as client:
        with pytest.raises(exc_type) as caught:
            await client.chat.completions.create(model="chat", messages=USER)
    assert caught.value.status_code == status
    assert caught.value.message.endswith(error.message)


async def test_error_mid_stream() -> None:
    async with connect(make_stack(Fail(BackendError("upstream broke"), after_chunks=2))) as client:
        stream = await client.chat.completions.create(
            model="chat",
            messages=USER,
            stream=True,
        )
        seen = []
        with pytest.raises(openai.APIError) as caught:
            async for chunk in stream:
                seen.append(chunk.choices[0].delta.content)
    assert seen == ["part0 ", "part1 "]
    assert caught.value.message == "upstream broke"


async def test_usage_reaches_metrics() -> None:
    stack = make_stack(Reply("x", usage=Usage(prompt_tokens=11, completion_tokens=4)))
    async with connect(stack) as client:
        await client.chat.completions.create(model="chat", messages=USER)
    text = stack.metrics.render()[0].decode()
    assert 'wayport_tokens_total{direction="in",model="chat"} 11.0' in text
    assert 'wayport_tokens_total{direction="out",model="chat"} 4.0' in text
