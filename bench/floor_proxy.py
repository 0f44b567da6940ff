"""The "Python floor": the cheapest honest Python pass-through proxy.

    python bench/floor_proxy.py --upstream http://127.0.0.1:40123 --port 0
    READY http://127.0.0.1:40124          <- first line on stdout, once it serves

A raw ASGI app on uvicorn (uvloop + httptools) that forwards each request body to the
upstream through one shared aiohttp session and sends the answer back; Server-Sent Events
are passed through chunk by chunk as they arrive. No auth, no validation, no parsing: any
gateway written in Python pays at least this much, so Wayport is measured against it.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import aiohttp
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = b"application/json"
_BAD_GATEWAY = b'{"error":{"message":"upstream unreachable","type":"upstream_error"}}'


class FloorProxy:
    """ASGI app: ``await FloorProxy("http://127.0.0.1:8000")(scope, receive, send)``.

    The aiohttp session is opened by the lifespan startup and closed by its shutdown, so one
    connection pool serves every request. ``on_ready`` runs once the session exists.
    """

    def __init__(self, upstream: str, on_ready: Callable[[], None] | None = None) -> None:
        self._upstream = upstream.rstrip("/")
        self._on_ready = on_ready
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=1024, ttl_dns_cache=None),
                    timeout=aiohttp.ClientTimeout(total=120),
                    auto_decompress=False,
                )
                await send({"type": "lifespan.startup.complete"})
                if self._on_ready is not None:
                    self._on_ready()
            elif message["type"] == "lifespan.shutdown":
                if self._session is not None:
                    await self._session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self._session is not None, "lifespan startup has not run"
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        url = self._upstream + scope["path"]
        try:
            async with self._session.request(
                scope["method"], url, data=body, headers={"Content-Type": "application/json"}
            ) as upstream:
                content_type = upstream.headers.get("Content-Type", "application/json")
                if content_type.startswith("text/event-stream"):
                    await send(
                        {
                            "type": "http.response.start",
                            "status": upstream.status,
                            "headers": [(b"content-type", content_type.encode())],
                        }
                    )
                    async for chunk in upstream.content.iter_any():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    await send({"type": "http.response.body", "body": b""})
                    return
                data = await upstream.read()
                status = upstream.status
        except aiohttp.ClientError:
            status, content_type, data = 502, "application/json", _BAD_GATEWAY
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one (read it back with ``getsockname``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--upstream", required=True, help="base URL of the OpenAI-shaped server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    sock = bind(args.host, args.port)
    url = f"http://{args.host}:{sock.getsockname()[1]}"
    # The socket already listens, so a client that connects between READY and the first
    # accept waits in the backlog instead of being refused.
    app = FloorProxy(args.upstream, on_ready=lambda: print(f"READY {url}", flush=True))
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=75,
        backlog=1024,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
