"""Test helpers: a real uvicorn server on an ephemeral loopback port, and a wired gateway
stack (scripted backends -> real Router -> Gateway -> app)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import httpx
import structlog
import uvicorn
from starlette.types import ASGIApp

from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.models.router import Router
from wayport.ports import ModelBackend
from wayport.server.app import create_app
from wayport.server.settings import ServerSettings
from wayport.service.gateway import Gateway
from wayport.telemetry.logging import configure_logging
from wayport.telemetry.metrics import Metrics
from wayport.testing import ScriptedBackend

KEY = "wp-test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Stack:
    backends: Mapping[str, ModelBackend]
    router: Router
    gateway: Gateway
    metrics: Metrics
    app: ASGIApp
    settings: ServerSettings

    def scripted(self, model: str) -> ScriptedBackend:
        backend = self.backends[model]
        assert isinstance(backend, ScriptedBackend)
        return backend


def build_stack(
    backends: Mapping[str, ModelBackend] | None = None,
    *,
    settings: ServerSettings | None = None,
    state_ok: Callable[[], bool] = lambda: True,
    with_metrics: bool = True,
) -> Stack:
    """One model group per backend, named like its key; no retries, so a scripted failure
    reaches the client as it is."""
    backends = backends if backends is not None else {"chat": ScriptedBackend("chat-1")}
    metrics = Metrics()
    router = Router(
        groups=[
            ModelGroup(name=name, deployments=(WeightedDeployment(name=name),)) for name in backends
        ],
        backends=backends,
        policy=RouterPolicy(max_retries=0),
        events=metrics,
    )
    gateway = Gateway(router=router, state_ok=state_ok, observer=metrics)
    settings = settings or ServerSettings(api_key=KEY, access_log=False, version="9.9.9")
    app = create_app(gateway=gateway, settings=settings, metrics=metrics if with_metrics else None)
    return Stack(
        backends=backends,
        router=router,
        gateway=gateway,
        metrics=metrics,
        app=app,
        settings=settings,
    )


@asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn (lifespan on) on 127.0.0.1:<ephemeral>; yields the base URL.

    The socket is bound and listening before the server task starts, so clients may connect
    at once: the kernel queues them until uvicorn accepts, after the lifespan startup.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="on", log_config=None, access_log=False, ws="none", http="httptools"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def asgi_client(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client (no lifespan: start the gateway yourself when needed)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wayport.test") as client:
        yield client


def chat(model: str = "chat", content: str = "hello there", **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


class LogCapture:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.text.splitlines()]


@contextmanager
def captured_logs(*secrets: str) -> Iterator[LogCapture]:
    """JSON logging into memory; read it after the block (which flushes the writer thread)."""
    capture = LogCapture()
    root = logging.getLogger()
    level = root.level
    handle = configure_logging("info", secrets=secrets, stream=capture.stream)
    try:
        yield capture
    finally:
        handle.close()
        structlog.reset_defaults()
        root.setLevel(level)
