"""A real HTTP API on 127.0.0.1:0 for the HTTP tool tests, and a guarded client that allows
exactly that loopback address."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from wayport.net import GuardedClient, GuardPolicy


@dataclass
class Api:
    url: str
    seen: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    holder = Api(url="")

    async def item(request: web.Request) -> web.Response:
        holder.seen.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "query": dict(request.query),
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": (await request.read()).decode(),
            }
        )
        if request.match_info["id"] == "missing":
            return web.json_response({"error": "no such item"}, status=404)
        return web.json_response({"id": request.match_info["id"], "ok": True})

    app = web.Application()
    app.router.add_route("*", "/items/{id}", item)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    holder.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield holder
    finally:
        await runner.cleanup()


@pytest.fixture
async def guard() -> AsyncIterator[GuardedClient]:
    async with GuardedClient(GuardPolicy(allow=("127.0.0.1",))) as client:
        yield client
