"""A cheap OpenAI-shaped upstream for benchmarks: it must never be the bottleneck.

    python bench/mock_upstream.py --port 0 [--delay-ms 5]
    READY http://127.0.0.1:40123          <- first line on stdout, once it accepts connections

Every ``POST /v1/chat/completions`` gets the same fixed answer (usage included). A body that
asks ``"stream": true`` gets it as Server-Sent Events (one role chunk, one chunk per word, a
finish chunk, a usage chunk, ``data: [DONE]``) in chunked transfer encoding, like OpenAI and
vLLM. ``GET`` on any path answers a model list, so it doubles as a health check.

It is a raw ``asyncio.Protocol`` HTTP/1.1 keep-alive server on uvloop: every answer is
pre-rendered at start-up, and a request costs one scan for the end of its head, one
``Content-Length`` lookup, one regular-expression search of the body and one ``write``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

MODEL = "mock-1"
REPLY_WORDS = ("Hello", " from", " the", " mock", " upstream", ".")
PROMPT_TOKENS = 12
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024

_STREAM_TRUE = re.compile(rb'"stream"\s*:\s*true')
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked", re.IGNORECASE)
_CONNECTION_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _head(status: str, headers: Sequence[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _plain(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    return _head(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))]) + (
        body
    )


def render_completion() -> bytes:
    """The whole non-streamed HTTP response, head and body."""
    usage = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": len(REPLY_WORDS),
        "total_tokens": PROMPT_TOKENS + len(REPLY_WORDS),
    }
    body = _json(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(REPLY_WORDS)},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
    )
    return _plain("200 OK", body)


def render_stream() -> bytes:
    """The whole streamed HTTP response: SSE events, one HTTP chunk each."""

    def chunk(choices: list[object], usage: object = None) -> dict[str, object]:
        event: dict[str, object] = {
            "id": "chatcmpl-mock",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": MODEL,
            "choices": choices,
        }
        if usage is not None:
            event["usage"] = usage
        return event

    def delta(content: dict[str, str], finish: str | None = None) -> list[object]:
        return [{"index": 0, "delta": content, "finish_reason": finish}]

    events = [chunk(delta({"role": "assistant", "content": ""}))]
    events += [chunk(delta({"content": word})) for word in REPLY_WORDS]
    events.append(chunk(delta({}, "stop")))
    usage = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": len(REPLY_WORDS),
        "total_tokens": PROMPT_TOKENS + len(REPLY_WORDS),
    }
    events.append(chunk([], usage))
    payloads = [b"data: " + _json(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
    head = _head(
        "200 OK",
        [
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("Transfer-Encoding", "chunked"),
        ],
    )
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in payloads) + b"0\r\n\r\n"
    return head + body


@dataclass(frozen=True, slots=True, kw_only=True)
class Answers:
    """Pre-rendered responses, shared by every connection."""

    completion: bytes
    stream: bytes
    models: bytes
    not_found: bytes
    bad_request: bytes
    delay: float = 0.0

    @classmethod
    def build(cls, delay_ms: float = 0.0) -> Answers:
        models = _json({"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        error = _json({"error": {"message": "not found", "type": "not_found_error"}})
        bad = _json({"error": {"message": "bad request", "type": "invalid_request_error"}})
        return cls(
            completion=render_completion(),
            stream=render_stream(),
            models=_plain("200 OK", models),
            not_found=_plain("404 Not Found", error),
            bad_request=_head(
                "400 Bad Request",
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(bad))),
                    ("Connection", "close"),
                ],
            )
            + bad,
            delay=delay_ms / 1000.0,
        )


class UpstreamProtocol(asyncio.Protocol):
    """One keep-alive connection. Requests are answered in order; a client that pipelines
    gets its answers in the order it asked (delays are equal, so timers fire in order)."""

    __slots__ = (
        "_answers",
        "_body_needed",
        "_buf",
        "_close_after",
        "_loop",
        "_path_ok",
        "_transport",
    )

    def __init__(self, answers: Answers) -> None:
        self._answers = answers
        self._buf = bytearray()
        self._body_needed = -1  # -1: still reading a request head
        self._close_after = False
        self._path_ok = True
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while True:
            if self._body_needed < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        self._reply(self._answers.bad_request, close=True)
                    return
                head = bytes(buf[: end + 2])
                del buf[: end + 4]
                if head.startswith(b"GET ") or head.startswith(b"HEAD "):
                    self._reply(self._answers.models, close=bool(_CONNECTION_CLOSE.search(head)))
                    continue
                if _CHUNKED.search(head):
                    # Real clients (aiohttp, httpx, wrk) send JSON with a Content-Length.
                    self._reply(self._answers.bad_request, close=True)
                    return
                match = _CONTENT_LENGTH.search(head)
                length = int(match.group(1)) if match else 0
                if length > MAX_BODY:
                    self._reply(self._answers.bad_request, close=True)
                    return
                self._body_needed = length
                self._close_after = bool(_CONNECTION_CLOSE.search(head))
                self._path_ok = b" /v1/chat/completions" in head[: head.find(b"\r\n")]
            if len(buf) < self._body_needed:
                return
            body = bytes(buf[: self._body_needed])
            del buf[: self._body_needed]
            self._body_needed = -1
            if not self._path_ok:
                answer = self._answers.not_found
            elif _STREAM_TRUE.search(body):
                answer = self._answers.stream
            else:
                answer = self._answers.completion
            self._reply(answer, close=self._close_after)

    def _reply(self, answer: bytes, *, close: bool) -> None:
        if self._answers.delay > 0:
            self._loop.call_later(self._answers.delay, self._write, answer, close)
        else:
            self._write(answer, close)

    def _write(self, answer: bytes, close: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(answer)
        if close:
            transport.close()


async def serve(host: str, port: int, delay_ms: float = 0.0) -> asyncio.Server:
    """Start listening and return the server (``server.sockets[0]`` has the real port)."""
    answers = Answers.build(delay_ms)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: UpstreamProtocol(answers), host, port, reuse_address=True, backlog=1024
    )


async def _main(args: argparse.Namespace) -> None:
    server = await serve(args.host, args.port, args.delay_ms)
    port = server.sockets[0].getsockname()[1]
    print(f"READY http://{args.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="wait before answering")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(_main(args))
    else:
        uvloop.run(_main(args))


if __name__ == "__main__":
    main()
