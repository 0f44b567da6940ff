"""FakeUpstream itself, spoken to with a plain aiohttp client: wire framing, fault selection,
and the refusals that make it a faithful stand-in for the real servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from wayport.testing.fake_upstream import FakeUpstream, Fault

pytestmark = pytest.mark.anyio

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi there"}]}
CLAUDE = {"model": "c", "max_tokens": 10, "messages": [{"role": "user", "content": "hi there"}]}
VERSION = {"anthropic-version": "2023-06-01"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    async with http.post(url, json=body, headers=headers) as resp:
        return resp.status, resp.content_type, await resp.read()


async def test_openai_stream_framing(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    status, kind, raw = await post(http, fake.openai_url + "/chat/completions", body)
    assert (status, kind) == (200, "text/event-stream")
    frames = raw.split(b"\n\n")
    assert frames[-2:] == [b"data: [DONE]", b""]
    assert all(f.startswith(b"data: {") for f in frames[:-2])
    assert b'"usage"' in frames[-3]
    assert b'"finish_reason": "stop"' in frames[-4]


async def test_anthropic_stream_framing(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    status, kind, raw = await post(
        http, fake.anthropic_url + "/v1/messages", {**CLAUDE, "stream": True}, VERSION
    )
    assert (status, kind) == (200, "text/event-stream")
    frames = [f for f in raw.split(b"\r\n\r\n") if f]
    names = [f.split(b"\r\n")[0] for f in frames]
    assert names[0] == b"event: message_start"
    assert names[-2:] == [b"event: message_delta", b"event: message_stop"]
    assert all(f.split(b"\r\n")[1].startswith(b"data: {") for f in frames)


async def test_script_is_taken_in_order_and_requests_are_recorded(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    fake.script(Fault.status(503), Fault.rate_limit(retry_after=2, retry_after_ms=1500))
    url = fake.openai_url + "/chat/completions"
    assert (await post(http, url, CHAT))[0] == 503
    async with http.post(url, json=CHAT) as resp:
        assert resp.status == 429
        assert resp.headers["retry-after"] == "2"
        assert resp.headers["retry-after-ms"] == "1500"
    assert (await post(http, url, CHAT))[0] == 200
    assert [r.path for r in fake.requests] == ["/v1/chat/completions"] * 3
    assert fake.requests[0].body == CHAT


async def test_header_selects_a_fault_without_taking_the_script(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    fake.script(Fault.status(500))
    url = fake.openai_url + "/chat/completions"
    picked = Fault.status(400, code="context_length_exceeded").header()
    status, _, raw = await post(http, url, CHAT, {"x-fake-fault": picked})
    assert status == 400
    assert b"context_length_exceeded" in raw
    assert (await post(http, url, CHAT))[0] == 500


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(503),
        Fault.status(400, code="context_length_exceeded", message="too long"),
        Fault.rate_limit(retry_after=2),
        Fault.rate_limit(retry_after_ms=1500),
        Fault.reset(after_chunks=3),
        Fault.hang(),
        Fault.truncate(after_chunks=2),
        Fault.invalid_json(),
        Fault.stream_error(after_chunks=1, http_status=529),
    ],
)
def test_header_round_trip(fault: Fault) -> None:
    assert Fault.parse(fault.header()) == fault


def test_parse_shorthand_and_errors() -> None:
    assert Fault.parse("truncate=2") == Fault.truncate(after_chunks=2)
    assert Fault.parse("status=400;code=x") == Fault.status(400, code="x")
    with pytest.raises(ValueError, match="unknown fault"):
        Fault.parse("explode")
    with pytest.raises(ValueError, match="unknown fault field"):
        Fault.parse("status=500;colour=red")


async def test_reply_and_echo(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    url = fake.openai_url + "/chat/completions"
    _, _, raw = await post(http, url, CHAT)
    assert b'"content": "hi there"' in raw
    fake.reply(text="Hello from fake")
    _, _, raw = await post(http, url, CHAT)
    assert b'"content": "Hello from fake"' in raw


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        ({**CLAUDE, "max_tokens": None}, VERSION, b"max_tokens"),
        (CLAUDE, None, b"anthropic-version"),
        ({**CLAUDE, "messages": CLAUDE["messages"] * 2}, VERSION, b"alternate"),
        ({**CLAUDE, "messages": [{"role": "system", "content": "x"}]}, VERSION, b"role"),
        (
            {
                **CLAUDE,
                "messages": [
                    {"role": "user", "content": "hi"},
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
                    },
                    {"role": "user", "content": "no result"},
                ],
            },
            VERSION,
            b"tool_result",
        ),
        (
            {**CLAUDE, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
            VERSION,
            b"non-empty",
        ),
    ],
)
async def test_anthropic_refusals(
    fake: FakeUpstream,
    http: aiohttp.ClientSession,
    body: dict[str, Any],
    headers: dict[str, str] | None,
    message: bytes,
) -> None:
    status, _, raw = await post(http, fake.anthropic_url + "/v1/messages", body, headers)
    assert status == 400
    assert b"invalid_request_error" in raw
    assert message in raw


async def test_openai_refuses_stream_options_without_stream(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    body = {**CHAT, "stream_options": {"include_usage": True}}
    status, _, raw = await post(http, fake.openai_url + "/chat/completions", body)
    assert status == 400
    assert b"stream_options" in raw


async def test_api_key_is_demanded(http: aiohttp.ClientSession) -> None:
    async with FakeUpstream(api_key="k1") as fake:
        url = fake.openai_url + "/chat/completions"
        assert (await post(http, url, CHAT, {"authorization": "Bearer nope"}))[0] == 401
        assert (await post(http, url, CHAT, {"authorization": "Bearer k1"}))[0] == 200
        claude = fake.anthropic_url + "/v1/messages"
        assert (await post(http, claude, CLAUDE, {**VERSION, "x-api-key": "k1"}))[0] == 200


async def test_embeddings_and_models(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    async with http.post(
        fake.openai_url + "/embeddings", json={"model": "e", "input": ["a", "bb"]}
    ) as resp:
        data = (await resp.json())["data"]
    assert sorted((d["index"], d["embedding"][0]) for d in data) == [(0, 1.0), (1, 2.0)]
    async with http.get(fake.openai_url + "/models") as resp:
        assert (await resp.json())["data"][0]["id"] == "fake"


async def test_hang_ends_when_the_fake_closes(http: aiohttp.ClientSession) -> None:
    async with FakeUpstream() as fake:
        fake.script(Fault.hang())
        pending = asyncio.create_task(post(http, fake.openai_url + "/chat/completions", CHAT))
        await fake.wait_requests(1)
    status, _, _ = await pending
    assert status == 503
