"""Server-sent events on the wire, failures mid-stream, clients that leave, bodies that never
end, and the lifespan, against a real uvicorn server where the transport matters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import pytest

from wayport.core.errors import BackendError, BackendUnavailable
from wayport.core.types import ChatRequest, Chunk
from wayport.server.settings import ServerSettings
from wayport.testing import Fail, ScriptedBackend

from .helpers import AUTH, KEY, asgi_client, build_stack, chat, serve

pytestmark = pytest.mark.anyio


def events(body: str) -> list[str]:
    assert body.endswith("\n\n")
    parts = body[:-2].split("\n\n")
    assert all(p.startswith("data: ") for p in parts)
    return [p.removeprefix("data: ") for p in parts]


async def test_sse_wire_format() -> None:
    async with asgi_client(build_stack().app) as client:
        response = await client.post(
            "/v1/chat/completions",
            json=chat(stream=True, stream_options={"include_usage": True}),
            headers=AUTH,
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-request-id"].startswith("req-")
    data = events(response.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "ok"}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}


async def test_error_before_first_chunk_is_a_json_error() -> None:
    stack = build_stack({"chat": ScriptedBackend("c", [Fail(BackendUnavailable("down"))])})
    async with asgi_client(stack.app) as client:
        response = await client.post("/v1/chat/completions", json=chat(stream=True), headers=AUTH)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["message"] == "down"


async def test_error_after_first_chunk_is_one_terminal_event() -> None:
    failing = Fail(BackendError("upstream broke"), after_chunks=2)
    stack = build_stack({"chat": ScriptedBackend("c", [failing])})
    async with asgi_client(stack.app) as client:
        response = await client.post("/v1/chat/completions", json=chat(stream=True), headers=AUTH)
    assert response.status_code == 200
    data = events(response.text)
    assert "[DONE]" not in data
    assert [json.loads(d)["choices"][0]["delta"]["content"] for d in data[:2]] == [
        "part0 ",
        "part1 ",
    ]
    assert json.loads(data[-1]) == {
        "error": {
            "message": "upstream broke",
            "type": "upstream_error",
            "param": None,
            "code": None,
        }
    }
    assert len(data) == 3
    assert len(stack.scripted("chat").calls) == 1  # never retried once the stream began


class HangingBackend(ScriptedBackend):
    """Streams one chunk, then waits for a word that never comes; records when its stream
    is closed."""

    def __init__(self) -> None:
        super().__init__("hanging")
        self.first_sent = asyncio.Event()
        self.stream_closed = asyncio.Event()

    async def stream(
        self, request: ChatRequest, *, timeout: float | None = None
    ) -> AsyncIterator[Chunk]:
        try:
            yield Chunk(content="first", role="assistant")
            self.first_sent.set()
            await asyncio.Event().wait()
            yield Chunk(content="never")
        finally:
            self.stream_closed.set()


async def test_client_disconnect_closes_the_stream() -> None:
    backend = HangingBackend()
    stack = build_stack({"chat": backend})
    async with serve(stack.app) as url, httpx.AsyncClient(base_url=url) as client:
        async with client.stream(
            "POST", "/v1/chat/completions", json=chat(stream=True), headers=AUTH
        ) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            first = await anext(lines)
            assert json.loads(first.removeprefix("data: "))["choices"][0]["delta"]["content"]
            await backend.first_sent.wait()
        # Leaving the block closed the connection mid-stream.
        with anyio.fail_after(10):
            await backend.stream_closed.wait()
    assert stack.router.deployment_status()[0].inflight == 0


async def raw_exchange(url: str, head: bytes, body_parts: list[bytes]) -> bytes:
    """Send a request by hand and read the response, without ending the body."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head)
        for part in body_parts:
            writer.write(part)
        await writer.drain()
        status_line = await reader.readline()
        headers = await reader.readuntil(b"\r\n\r\n")
        return status_line + headers
    finally:
        writer.close()
        await writer.wait_closed()


async def test_chunked_body_over_limit_is_cut_off() -> None:
    settings = ServerSettings(api_key=KEY, max_body_bytes=1000, access_log=False, version="1")
    stack = build_stack(settings=settings)
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + KEY.encode() + b"\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 600
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    async with serve(stack.app) as url:
        # Two chunks pass the limit; the terminating chunk is never sent. A server that
        # waited for the whole body would never answer.
        with anyio.fail_after(10):
            answer = await raw_exchange(url, head, [frame, frame])
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"connection: close" in answer.lower()


async def test_lifespan_starts_and_closes_the_backends() -> None:
    stack = build_stack()
    backend = stack.scripted("chat")
    assert not backend.started
    async with serve(stack.app) as url, httpx.AsyncClient(base_url=url) as client:
        # The server accepts connections only once the lifespan startup has finished.
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert backend.started
    assert backend.closed


class BrokenStart(ScriptedBackend):
    async def start(self) -> None:
        raise BackendUnavailable("weights missing")


async def test_failed_startup_is_reported_to_the_server() -> None:
    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "lifespan.startup"}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    stack = build_stack({"chat": BrokenStart("b")})
    await stack.app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert sent == [{"type": "lifespan.startup.failed", "message": "weights missing"}]
