"""A tiny real HTTP server on 127.0.0.1:0 for the guard's tests: echo, redirects, big and
hanging answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web


@dataclass
class Upstream:
    url: str
    port: int
    release: asyncio.Event = field(default_factory=asyncio.Event)
    hits: list[str] = field(default_factory=list)


def _app(upstream: Upstream) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        upstream.hits.append(request.path_qs)
        return web.json_response(
            {
                "method": request.method,
                "path": request.path_qs,
                "host": request.headers.get("Host"),
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": (await request.read()).decode(),
            }
        )

    async def redirect(request: web.Request) -> web.Response:
        upstream.hits.append(request.path_qs)
        status = int(request.query.get("status", "302"))
        return web.Response(status=status, headers={"Location": request.query["to"]})

    async def loop(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/loop"})

    async def big(request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        if request.query.get("chunked"):
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for _ in range(size // 1024):
                await resp.write(b"x" * 1024)
            await resp.write_eof()
            return resp
        return web.Response(body=b"x" * size)

    async def hang(request: web.Request) -> web.Response:
        await upstream.release.wait()
        return web.Response(text="late")

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/redirect", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_get("/big", big)
    app.router.add_get("/hang", hang)
    return app


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    holder = Upstream(url="", port=0)
    runner = web.AppRunner(_app(holder), shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    holder.url, holder.port = f"http://127.0.0.1:{port}", port
    try:
        yield holder
    finally:
        holder.release.set()
        await runner.cleanup()
