"""The streaming fast path: events that one upstream read delivers go out in one write, with
the exact bytes the ``ChatCompletionChunk`` structs encode to, and a failure in the middle of
such a read still ends the stream with everything before it and then the error event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest

from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.types import ChatRequest, Chunk, Usage
from wayport.models.openai_compat import OpenAICompatBackend
from wayport.models.router import Router
from wayport.server.app import create_app
from wayport.server.openai_api import _Framer
from wayport.server.responses import (
    ChatCompletionChunk,
    ChunkChoice,
    Delta,
    encode,
    tool_call_deltas,
    usage_body,
)
from wayport.server.settings import ServerSettings
from wayport.service.gateway import Gateway

KEY = "wp-test-key-0123456789abcdef"


def sse(*events: object) -> bytes:
    return b"".join(
        b"data: " + (e if isinstance(e, bytes) else msgspec.json.encode(e)) + b"\n\n"
        for e in events
    )


def delta(content: dict[str, str], finish: str | None = None) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": content, "finish_reason": finish}]}


WHOLE = sse(
    delta({"role": "assistant", "content": ""}),
    delta({"content": "Hel"}),
    delta({"content": "lo"}),
    delta({}, "stop"),
    {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
    b"[DONE]",
)
BROKEN = sse(
    delta({"role": "assistant", "content": "a"}),
    delta({"content": "b"}),
    {"error": {"message": "boom", "type": "server_error"}},
)


class OneWriteUpstream:
    """An OpenAI-shaped server on a loopback port that writes each streamed answer with one
    ``write``, as a fast upstream does: the reader sees every event in one read."""

    def __init__(self, answer: bytes) -> None:
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(answer), answer)
        self._response = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n" + body
        )
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                writer.write(self._response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed the connection: this exchange is over
        finally:
            writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[OneWriteUpstream]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        try:
            yield self
        finally:
            server.close()
            await server.wait_closed()


@asynccontextmanager
async def backend_for(answer: bytes) -> AsyncIterator[OpenAICompatBackend]:
    async with OneWriteUpstream(answer).running() as upstream:
        backend = OpenAICompatBackend(name="up", base_url=upstream.url, model="m")
        await backend.start()
        try:
            yield backend
        finally:
            await backend.close()


async def ask_app(backend: OpenAICompatBackend, body: dict[str, Any]) -> list[dict[str, Any]]:
    """POST ``body`` straight to the ASGI app; return the messages it sent."""
    router = Router(
        groups=[ModelGroup(name="chat", deployments=(WeightedDeployment(name="up"),))],
        backends={"up": backend},
        policy=RouterPolicy(max_retries=0),
    )
    app = create_app(
        gateway=Gateway(router=router),
        settings=ServerSettings(api_key=KEY, access_log=False, version="0"),
        metrics=None,
    )
    raw = msgspec.json.encode(body)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
        "headers": [
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {KEY}".encode()),
            (b"content-length", str(len(raw)).encode()),
        ],
    }
    never = asyncio.Event()
    received = False
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await never.wait()  # the client stays until the answer is complete
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    return sent


def data_of(sent: list[dict[str, Any]]) -> list[str]:
    text = b"".join(m.get("body", b"") for m in sent).decode()
    return [p.removeprefix("data: ") for p in text.split("\n\n") if p]


@pytest.mark.anyio
async def test_backend_yields_one_batch_per_read() -> None:
    async with backend_for(WHOLE) as backend:
        request_ = _request()
        batches = [b async for b in backend.stream_batches(request_)]
        flat = [c async for c in backend.stream(request_)]
    assert len(batches) == 1
    assert [c.content for c in batches[0]] == ["", "Hel", "lo", None, None]
    assert batches[0][-1].usage == Usage(prompt_tokens=3, completion_tokens=2)
    assert flat == batches[0]


@pytest.mark.anyio
async def test_error_in_a_batch_comes_after_the_chunks_before_it() -> None:
    async with backend_for(BROKEN) as backend:
        batches = backend.stream_batches(_request())
        first = await anext(batches)
        assert [c.content for c in first] == ["a", "b"]
        with pytest.raises(Exception, match="boom"):
            await anext(batches)
        await batches.aclose()


@pytest.mark.anyio
async def test_server_writes_what_arrived_together_in_one_send() -> None:
    body = {
        "model": "chat",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with backend_for(WHOLE) as backend:
        sent = await ask_app(backend, body)
    kinds = [(m["type"], m.get("more_body", False)) for m in sent]
    # Headers, every event of the one upstream read, then usage + [DONE] with the end.
    assert kinds == [
        ("http.response.start", False),
        ("http.response.body", True),
        ("http.response.body", False),
    ]
    data = data_of(sent)
    assert data[-1] == "[DONE]"
    events = [json.loads(d) for d in data[:-1]]
    assert [e["choices"][0]["delta"] for e in events[:-1]] == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": "lo"},
        {},
    ]
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["choices"] == []
    assert events[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


@pytest.mark.anyio
async def test_mid_read_error_still_sends_the_chunks_then_the_error_event() -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with backend_for(BROKEN) as backend:
        sent = await ask_app(backend, body)
    data = data_of(sent)
    assert [json.loads(d)["choices"][0]["delta"].get("content") for d in data[:2]] == ["a", "b"]
    assert json.loads(data[-1])["error"]["message"].endswith("boom")
    assert "[DONE]" not in data
    assert sent[-1]["more_body"] is False


def _request() -> ChatRequest:
    return ChatRequest(model="chat", messages=[{"role": "user", "content": "hi"}], stream=True)


CHUNKS = [
    Chunk(content="plain"),
    Chunk(content='quotes " and \\ and \n and é'),
    Chunk(content=""),
    Chunk(finish_reason="stop"),
    Chunk(content="last", finish_reason="length"),
    Chunk(tool_calls=[{"index": 0, "id": "c1", "type": "function", "function": {"name": "f"}}]),
    Chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"a"'}}], content=None),
]


@pytest.mark.parametrize("chunk", CHUNKS)
def test_framer_bytes_match_the_struct_encoding(chunk: Chunk) -> None:
    framer = _Framer('model "x"')
    prefix = framer.usage(Usage()).split(b',"choices"')[0].removeprefix(b"data: ")
    envelope = json.loads(prefix + b"}")

    def expected(delta: Delta, finish: str | None) -> bytes:
        struct = ChatCompletionChunk(
            id=envelope["id"],
            object="chat.completion.chunk",
            created=envelope["created"],
            model='model "x"',
            choices=[ChunkChoice(delta=delta, finish_reason=finish)],
        )
        return b"data: " + encode(struct) + b"\n\n"

    calls = tool_call_deltas(chunk.tool_calls) if chunk.tool_calls else None
    assert framer.next(chunk) == expected(
        Delta(content=chunk.content, tool_calls=calls), chunk.finish_reason
    )
    first_content = chunk.content if chunk.content is not None or calls else ""
    assert framer.first(chunk) == expected(
        Delta(role="assistant", content=first_content, tool_calls=calls), chunk.finish_reason
    )


def test_framer_usage_and_usage_only_chunks() -> None:
    framer = _Framer("m")
    usage = Usage(prompt_tokens=4, completion_tokens=5)
    assert framer.next(Chunk(usage=usage)) is None
    event = framer.usage(usage)
    parsed = json.loads(event.removeprefix(b"data: "))
    assert parsed["object"] == "chat.completion.chunk"
    assert parsed["choices"] == []
    assert parsed["usage"] == msgspec.to_builtins(usage_body(usage))
    assert event.endswith(b"}\n\n")
