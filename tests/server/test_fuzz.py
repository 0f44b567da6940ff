"""Bad input never yields a 5xx: generated bodies (random bytes, random JSON, valid bodies with
one field replaced by anything) must each get a 2xx or a 4xx with an OpenAI error body."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import ASGIApp

from wayport.testing import ScriptedBackend

from .helpers import AUTH, asgi_client, build_stack, chat

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
CHAT_FIELDS = [
    "model",
    "messages",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "n",
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "response_format",
    "logit_bias",
    "unknown_vendor_param",
]
ROLES = ["system", "developer", "user", "assistant", "tool", "robot"]
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(ROLES)},
        optional={
            "content": json_values,
            "tool_calls": json_values,
            "tool_call_id": json_values,
            "name": json_values,
        },
    ),
    max_size=3,
)
chat_bodies = (
    st.builds(lambda k, v: {**chat(), k: v}, st.sampled_from(CHAT_FIELDS), json_values)
    | st.builds(lambda m, s: chat(messages=m, stream=s), messages, st.booleans())
    | json_values
)
embedding_bodies = st.builds(
    lambda k, v: {"model": "chat", "input": "x", k: v},
    st.sampled_from(["model", "input", "encoding_format", "dimensions", "user"]),
    json_values,
)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[asyncio.Runner, ASGIApp]]:
    stack = build_stack({"chat": ScriptedBackend("c", embeddings=True)})
    with asyncio.Runner() as runner:
        runner.run(stack.gateway.start())
        yield runner, stack.app
        runner.run(stack.gateway.close())


async def exchange(app: ASGIApp, path: str, content: bytes) -> httpx.Response:
    async with asgi_client(app) as client:
        headers = {**AUTH, "Content-Type": "application/json"}
        return await client.post(path, content=content, headers=headers)


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error: dict[str, Any] = response.json()["error"]
        assert isinstance(error["message"], str)
        assert response.status_code in {400, 404, 413, 415}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=chat_bodies)
def test_chat_never_5xx(served: tuple[asyncio.Runner, ASGIApp], body: Any) -> None:
    runner, app = served
    check(runner.run(exchange(app, "/v1/chat/completions", json.dumps(body).encode())))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=embedding_bodies)
def test_embeddings_never_5xx(served: tuple[asyncio.Runner, ASGIApp], body: Any) -> None:
    runner, app = served
    check(runner.run(exchange(app, "/v1/embeddings", json.dumps(body).encode())))


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=64))
def test_random_bytes_never_5xx(served: tuple[asyncio.Runner, ASGIApp], raw: bytes) -> None:
    runner, app = served
    check(runner.run(exchange(app, "/v1/chat/completions", raw)))
