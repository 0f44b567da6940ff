"""The embedded backend against the real SmolLM2-135M GGUF: answers, streams, slots,
cancellation, context limits, idle unloading. Ground truth comes from llama-cpp-python
called directly on the same file."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import llama_cpp
import pytest

from wayport.core.errors import (
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    ContextWindowExceeded,
    Unsupported,
)
from wayport.core.types import ChatRequest, Chunk, EmbeddingRequest, Message
from wayport.models._llama_request import GenerationArgs, prompt_messages
from wayport.models.llamacpp import LlamaCppBackend, default_model_path
from wayport.ports import ModelBackend
from wayport.testing import ManualClock

pytestmark = pytest.mark.anyio
model = pytest.mark.model  # the tests that load the real weights

HI: list[Message] = [{"role": "user", "content": "Say hi."}]
GREEDY = {"temperature": 0.0, "seed": 7}
#: SmolLM2's end-of-generation tokens (<|endoftext|>, <|im_end|>, <reponame>), banned so that
#: an answer runs to max_tokens: a generation that takes far longer than any test step.
NO_END = {"logit_bias": {"0": -100, "2": -100, "4": -100}}
LONG = 1500


def request(messages: list[Message] = HI, **params: Any) -> ChatRequest:
    return ChatRequest(model="local", messages=messages, params={**GREEDY, **params})


def long_request() -> ChatRequest:
    return request(
        [{"role": "user", "content": "Tell me a long story."}], max_tokens=LONG, **NO_END
    )


@pytest.fixture(scope="module")
def direct() -> Iterator[llama_cpp.Llama]:
    """llama-cpp-python on the same file, the reference for texts and token counts."""
    llm = llama_cpp.Llama(str(default_model_path()), n_ctx=2048, verbose=False)
    yield llm
    llm.close()


@contextlib.asynccontextmanager
async def running(**options: Any) -> AsyncIterator[LlamaCppBackend]:
    backend = LlamaCppBackend(name="local", **{"slots": 1, **options})
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


async def until(condition: Callable[[], bool]) -> None:
    """Let other tasks run until ``condition`` holds (no clock involved)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def test_default_model_path_exists() -> None:
    path = default_model_path()
    assert path.is_file()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"


@model
async def test_is_a_model_backend() -> None:
    async with running() as backend:
        assert isinstance(backend, ModelBackend)
        assert backend.ready() and backend.loaded()
        assert backend.loads == 1
        assert backend.load_seconds is not None and backend.load_seconds > 0
        assert backend.context_window() == 2048


async def test_context_window_is_padded_as_llama_cpp_pads_it() -> None:
    backend = LlamaCppBackend(name="local", n_ctx=300, preload=False)
    assert backend.context_window() == 512
    await backend.close()


@model
async def test_count_tokens_matches_the_model_tokenizer(direct: llama_cpp.Llama) -> None:
    backend = LlamaCppBackend(name="local", preload=False)
    try:
        for text in ["Hello world, how are you?", "", "naïve café 日本語 🙂", "<|im_end|> x" * 5]:
            expected = len(direct.tokenize(text.encode(), add_bos=False, special=False))
            assert backend.count_tokens(text) == expected, text
    finally:
        await backend.close()


@model
async def test_complete_answers_with_usage(direct: llama_cpp.Llama) -> None:
    reference: Any = direct.create_chat_completion(
        messages=cast(Any, HI), max_tokens=64, temperature=0.0, seed=7
    )
    async with running() as backend:
        answer = await backend.complete(request(max_tokens=64))
        short = await backend.complete(request(max_tokens=5))
    assert answer.content and answer.content == reference["choices"][0]["message"]["content"]
    assert answer.finish_reason == "stop"
    assert answer.usage.prompt_tokens == reference["usage"]["prompt_tokens"]
    assert answer.usage.completion_tokens == reference["usage"]["completion_tokens"]
    assert 0 < answer.usage.completion_tokens < 64
    assert answer.model == "local"
    assert short.finish_reason == "length"
    assert short.usage.completion_tokens == 5
    assert answer.content.startswith(short.content or "-")


@model
async def test_stream_concatenates_to_the_same_answer() -> None:
    async with running() as backend:
        whole = await backend.complete(request(max_tokens=48))
        chunks = [chunk async for chunk in backend.stream(request(max_tokens=48))]
    texts = [c.content for c in chunks if c.content]
    assert len(texts) > 3
    assert "".join(texts) == whole.content
    assert chunks[0].role == "assistant"
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert chunks[-1].finish_reason == whole.finish_reason
    assert chunks[-1].usage == whole.usage


@model
async def test_two_slots_generate_at_once() -> None:
    async with running(slots=2) as backend:
        first = backend.stream(long_request())
        second = backend.stream(long_request())
        try:
            a = await anext(first)
            b = await anext(second)
            # Each answer is LONG tokens: both slots are still generating now.
            assert a.content and b.content
            assert backend.slots_busy() == 2
        finally:
            await first.aclose()
            await second.aclose()
    assert backend.generated_tokens < LONG


@model
async def test_one_slot_makes_the_second_request_wait() -> None:
    async with running(slots=1) as backend:
        first = backend.stream(long_request())
        second = backend.stream(request(max_tokens=8))
        await anext(first)
        waiting = asyncio.ensure_future(anext(second))
        try:
            await until(lambda: backend.requests_waiting() == 1)
            assert not waiting.done()
            assert backend.slots_busy() == 1
            await first.aclose()  # frees the slot at the next token
            chunk: Chunk = await waiting
            assert chunk.content
        finally:
            await first.aclose()
            await second.aclose()


@model
async def test_aclose_stops_generation_and_frees_the_slot() -> None:
    async with running(slots=1) as backend:
        stream = backend.stream(long_request())
        assert (await anext(stream)).content
        await stream.aclose()
        answer = await backend.complete(request(max_tokens=8))
        assert answer.content
        # The abandoned answer stopped long before its LONG tokens.
        assert backend.generated_tokens < 100
        assert backend.slots_busy() == 0


@model
async def test_timeout_stops_generation() -> None:
    async with running(slots=1) as backend:
        with pytest.raises(BackendTimeout):
            await backend.complete(long_request(), timeout=0.5)
        with pytest.raises(BackendTimeout):
            await backend.complete(request(), timeout=0)
        answer = await backend.complete(request(max_tokens=8))
        assert answer.content
        assert backend.generated_tokens < LONG


@model
async def test_stream_timeout_raises_mid_answer() -> None:
    async with running(slots=1) as backend:
        stream = backend.stream(long_request(), timeout=0.5)
        with pytest.raises(BackendTimeout):
            async for _ in stream:
                pass
        assert (await backend.complete(request(max_tokens=4))).content
        assert backend.generated_tokens < LONG


@model
async def test_prompt_longer_than_the_window_is_rejected() -> None:
    async with running(n_ctx=256) as backend:
        huge = "word " * 1000
        assert backend.count_tokens(huge) >= 256
        with pytest.raises(ContextWindowExceeded):
            await backend.complete(request([{"role": "user", "content": huge}]))
        with pytest.raises(ContextWindowExceeded):
            await anext(backend.stream(request([{"role": "user", "content": huge}])))
        # The text alone fits, the templated prompt does not: llama-cpp-python's own check.
        near = "word " * 250
        assert backend.count_tokens(near) < 256
        with pytest.raises(ContextWindowExceeded):
            await backend.complete(request([{"role": "user", "content": near}]))
        assert (await backend.complete(request(max_tokens=4))).content


@model
async def test_idle_unload_and_lazy_reload() -> None:
    clock = ManualClock()
    async with running(idle_unload=60, clock=clock) as backend:
        assert backend.loads == 1
        await backend.complete(request(max_tokens=4))
        clock.advance(59)
        await asyncio.sleep(0)
        assert backend.loaded()
        clock.advance(2)
        await until(lambda: not backend.loaded())
        assert backend.ready()  # a lazy reload is expected, not an outage
        answer = await backend.complete(request(max_tokens=4))
        assert answer.content
        assert backend.loaded()
        assert backend.loads == 2
        assert backend.load_seconds is not None and backend.load_seconds > 0


@model
async def test_lazy_load_on_first_use() -> None:
    async with running(preload=False) as backend:
        assert backend.ready() and not backend.loaded()
        assert backend.loads == 0 and backend.load_seconds is None
        results = await asyncio.gather(*(backend.complete(request(max_tokens=4)) for _ in range(3)))
        assert all(r.content for r in results)
        assert backend.loads == 1


@model
async def test_tool_choice_forces_a_call() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    req = ChatRequest(
        model="local",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[tool],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        params={**GREEDY, "max_tokens": 48},
    )
    async with running() as backend:
        answer = await backend.complete(req)
        chunks = [c async for c in backend.stream(req)]
    assert answer.finish_reason == "tool_calls"
    assert answer.tool_calls and answer.tool_calls[0]["function"]["name"] == "get_weather"
    deltas = [d for c in chunks for d in (c.tool_calls or [])]
    assert deltas[0].get("id") and deltas[0].get("function", {}).get("name") == "get_weather"
    assert all("id" not in d for d in deltas[1:])
    streamed = "".join(d.get("function", {}).get("arguments", "") for d in deltas)
    assert streamed == answer.tool_calls[0]["function"]["arguments"]
    assert chunks[-1].finish_reason == "tool_calls"


@model
async def test_bad_parameters_are_rejected_up_front() -> None:
    async with running(preload=False) as backend:
        with pytest.raises(BackendRejected) as caught:
            await backend.complete(request(temperature="hot"))
        assert caught.value.param == "temperature"
        with pytest.raises(Unsupported):
            await backend.complete(request(n=2))
        assert not backend.loaded()  # rejected before anything was loaded


@model
async def test_embed_is_unsupported() -> None:
    async with running(preload=False) as backend:
        with pytest.raises(Unsupported):
            await backend.embed(EmbeddingRequest(model="local", input="x"))


@model
async def test_closed_backend_refuses_requests() -> None:
    backend = LlamaCppBackend(name="local", slots=1)
    await backend.start()
    await backend.close()
    await backend.close()
    assert not backend.ready() and not backend.loaded()
    with pytest.raises(BackendUnavailable):
        await backend.complete(request(max_tokens=4))


# -- request translation (no weights) ---------------------------------------------------------


def args_of(**params: Any) -> GenerationArgs:
    return GenerationArgs.from_request(ChatRequest(model="m", messages=HI, params=params))


def test_only_parameters_sent_reach_llama_cpp() -> None:
    assert args_of().llama_kwargs() == {}
    kwargs = args_of(temperature=0, top_p=0.5, stop="END", seed=3, user="ignored").llama_kwargs()
    assert kwargs == {"temperature": 0.0, "top_p": 0.5, "stop": ["END"], "seed": 3}


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert args_of(max_tokens=5, max_completion_tokens=9).max_tokens == 9
    assert args_of(max_tokens=5).max_tokens == 5


def test_response_formats_become_grammar_options() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    as_schema = args_of(response_format={"type": "json_schema", "json_schema": {"schema": schema}})
    assert as_schema.response_format == {"type": "json_object", "schema": schema}
    assert args_of(response_format={"type": "json_object"}).response_format == {
        "type": "json_object"
    }
    assert args_of(response_format={"type": "text"}).response_format is None


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"temperature": True}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": "x"}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": [1]}, "stop"),
        ({"logit_bias": {"x": 1}}, "logit_bias"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
    ],
)
def test_bad_values_name_their_parameter(params: dict[str, Any], param: str) -> None:
    with pytest.raises(BackendRejected) as caught:
        args_of(**params)
    assert caught.value.param == param


def test_logit_bias_keys_become_token_ids() -> None:
    assert args_of(logit_bias={"2": -100}).llama_kwargs()["logit_bias"] == {2: -100.0}


def test_messages_are_flattened_for_chat_templates() -> None:
    plain: Message = {"role": "user", "content": "hi"}
    called: Message = {"role": "assistant", "content": None, "tool_calls": []}
    parts: Message = {
        "role": "user",
        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
    }
    out = prompt_messages(ChatRequest(model="m", messages=[plain, called, parts]))
    assert out[0] is plain
    assert out[1]["content"] == "" and called["content"] is None
    assert out[2]["content"] == "ab"
