"""Network safety at the HTTP edge: forwarded headers believed only from trusted proxies, CORS
off unless origins are listed (preflights answered, others refused), and request bodies
capped on every route that reads one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from wayport.server.cors import Cors
from wayport.server.proxy import ProxyHeaders
from wayport.server.settings import ServerSettings

from .helpers import AUTH, KEY, asgi_client, build_stack, captured_logs, chat, serve

pytestmark = pytest.mark.anyio


class Recorder:
    """An ASGI app that answers 200 and remembers the scope it saw."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _call(app: ProxyHeaders, peer: str, headers: dict[str, str]) -> Scope:
    transport = httpx.ASGITransport(app=app, client=(peer, 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.get("/", headers=headers)
    inner = app.app
    assert isinstance(inner, Recorder)
    return inner.scopes[-1]


@pytest.mark.parametrize(
    ("peer", "xff", "client"),
    [
        ("203.0.113.9", "198.51.100.7", "203.0.113.9"),  # not a trusted peer: header ignored
        ("10.0.0.5", "198.51.100.7", "198.51.100.7"),
        ("10.0.0.5", "1.2.3.4, 198.51.100.7, 10.0.0.9", "198.51.100.7"),  # spoofed left ignored
        ("10.0.0.5", "10.0.0.8, 10.0.0.9", "10.0.0.8"),  # only proxies: the first one
        ("10.0.0.5", "garbage", "10.0.0.5"),
        ("::ffff:10.0.0.5", "2001:db8::1", "2001:db8::1"),  # IPv4-mapped peer is the proxy
    ],
)
async def test_forwarded_for_only_from_trusted_proxies(peer: str, xff: str, client: str) -> None:
    app = ProxyHeaders(Recorder(), trusted=["10.0.0.0/8"])
    scope = await _call(app, peer, {"X-Forwarded-For": xff})
    assert scope["client"][0] == client


async def test_forwarded_proto_from_trusted_proxy_only() -> None:
    app = ProxyHeaders(Recorder(), trusted=["10.0.0.5"])
    assert (await _call(app, "10.0.0.5", {"X-Forwarded-Proto": "https"}))["scheme"] == "https"
    assert (await _call(app, "10.0.0.6", {"X-Forwarded-Proto": "https"}))["scheme"] == "http"
    assert (await _call(app, "10.0.0.5", {"X-Forwarded-Proto": "gopher"}))["scheme"] == "http"


async def test_access_log_records_the_forwarded_client() -> None:
    settings = ServerSettings(
        api_key=KEY, access_log=True, version="1", trusted_proxies=("127.0.0.1",)
    )
    stack = build_stack(settings=settings)
    with captured_logs() as logs:
        async with serve(stack.app) as url, httpx.AsyncClient(base_url=url) as client:
            r = await client.get("/healthz", headers={"X-Forwarded-For": "198.51.100.7"})
            assert r.status_code == 200
    [line] = [line for line in logs.lines() if line["event"] == "request"]
    assert line["client"] == "198.51.100.7"


async def test_cors_off_by_default() -> None:
    stack = build_stack()
    async with asgi_client(stack.app) as client:
        r = await client.get("/v1/models", headers={**AUTH, "Origin": "https://evil.example"})
        pre = await client.options(
            "/v1/models",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in pre.headers
    assert pre.status_code == 405  # no CORS layer: OPTIONS is just an unknown method


@pytest.fixture
async def cors_client() -> AsyncIterator[httpx.AsyncClient]:
    settings = ServerSettings(
        api_key=KEY, access_log=False, version="1", cors_origins=("https://app.example",)
    )
    async with asgi_client(build_stack(settings=settings).app) as client:
        yield client


async def test_cors_preflight_and_actual_request(cors_client: httpx.AsyncClient) -> None:
    pre = await cors_client.options(
        "/v1/chat/completions",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type, X-Evil",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert pre.headers["access-control-allow-headers"] == "authorization, content-type"
    assert "access-control-allow-credentials" not in pre.headers
    r = await cors_client.post(
        "/v1/chat/completions", json=chat(), headers={**AUTH, "Origin": "https://app.example"}
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert "Origin" in r.headers["vary"]


async def test_cors_refuses_other_origins(cors_client: httpx.AsyncClient) -> None:
    pre = await cors_client.options(
        "/v1/models",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert pre.status_code == 403
    assert pre.json()["error"]["code"] == "cors_denied"
    r = await cors_client.get("/v1/models", headers={**AUTH, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


async def test_cors_wildcard() -> None:
    app = Cors(Recorder(), origins=["*"])
    async with asgi_client(app) as client:
        r = await client.get("/", headers={"Origin": "https://any.example"})
    assert r.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings", "/v1/responses"])
@pytest.mark.parametrize("chunked", [False, True])
async def test_every_body_route_caps_the_request(path: str, chunked: bool) -> None:
    settings = ServerSettings(api_key=KEY, access_log=False, version="1", max_body_bytes=1024)
    big = b'{"model": "chat", "input": "' + b"x" * 4096 + b'"}'

    async def parts() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 512):
            yield big[i : i + 512]

    async with asgi_client(build_stack(settings=settings).app) as client:
        headers = {**AUTH, "Content-Type": "application/json"}
        r = await client.post(path, content=parts() if chunked else big, headers=headers)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
