"""The guarded client against a real allow-listed loopback server: reachable, redirects
re-checked hop by hop, secrets not carried across origins, size and time bounded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import pytest

from wayport.core.errors import (
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    PayloadTooLarge,
    PermissionDenied,
    WayportError,
)
from wayport.net import GuardedClient, GuardPolicy

pytestmark = pytest.mark.anyio

ZONE = {"svc.test": ["127.0.0.1"], "inward.test": ["10.0.0.7"]}


async def resolve(host: str) -> Sequence[str]:
    return ZONE[host]


def client(**policy: Any) -> GuardedClient:
    return GuardedClient(GuardPolicy(allow=("127.0.0.1/32",), **policy), resolve=resolve)


async def test_allow_listed_server_is_reachable(upstream: Any) -> None:
    async with client() as c:
        response = await c.request(
            "POST", f"{upstream.url}/echo?a=1", headers={"X-Key": "k"}, body=b'{"x":1}'
        )
    assert response.status == 200
    data = response.json()
    assert (data["method"], data["path"], data["body"]) == ("POST", "/echo?a=1", '{"x":1}')
    assert data["headers"]["x-key"] == "k"
    assert response.headers["content-type"].startswith("application/json")


async def test_loopback_refused_without_allow_list(upstream: Any) -> None:
    async with GuardedClient(GuardPolicy(), resolve=resolve) as c:
        with pytest.raises(PermissionDenied):
            await c.request("GET", f"{upstream.url}/echo")
    assert upstream.hits == []


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{port}/echo",
        "http://[::1]:{port}/echo",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://2130706433:{port}/echo",
        "http://0x7f000001:{port}/echo",
        "http://[::ffff:10.0.0.1]/",
        "http://inward.test/",
        "http://metadata.google.internal/",
        "file:///etc/passwd",
    ],
)
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_to_forbidden_address_refused(
    upstream: Any, target: str, status: int
) -> None:
    to = quote(target.format(port=upstream.port), safe="")
    async with client() as c:
        with pytest.raises(PermissionDenied):
            await c.request("GET", f"{upstream.url}/redirect?status={status}&to={to}")
    assert len(upstream.hits) == 1  # the redirect was served, its target never reached


async def test_two_hop_redirect_checked_at_every_hop(upstream: Any) -> None:
    inner = quote("http://192.168.0.1/", safe="")
    hop = quote(f"/redirect?to={inner}", safe="")
    async with client() as c:
        with pytest.raises(PermissionDenied, match=r"192\.168\.0\.1"):
            await c.request("GET", f"{upstream.url}/redirect?to={hop}")
    assert len(upstream.hits) == 2


async def test_allowed_redirect_followed_and_post_becomes_get(upstream: Any) -> None:
    to = quote("/echo", safe="")
    async with client() as c:
        response = await c.request("POST", f"{upstream.url}/redirect?to={to}", body=b"data")
    assert response.json()["method"] == "GET"
    assert response.url == f"{upstream.url}/echo"


async def test_307_keeps_method_and_body(upstream: Any) -> None:
    to = quote("/echo", safe="")
    async with client() as c:
        response = await c.request(
            "POST", f"{upstream.url}/redirect?status=307&to={to}", body=b"data"
        )
    assert (response.json()["method"], response.json()["body"]) == ("POST", "data")


async def test_secret_headers_dropped_when_redirect_leaves_origin(upstream: Any) -> None:
    to = quote(f"http://svc.test:{upstream.port}/echo", safe="")
    async with client() as c:
        response = await c.request(
            "GET", f"{upstream.url}/redirect?to={to}", headers={"Authorization": "Bearer s3cret"}
        )
    assert "authorization" not in response.json()["headers"]
    assert response.json()["host"] == f"svc.test:{upstream.port}"


async def test_redirect_loop_stops(upstream: Any) -> None:
    async with client(max_redirects=3) as c:
        with pytest.raises(BackendUnavailable, match="redirects"):
            await c.request("GET", f"{upstream.url}/loop")


@pytest.mark.parametrize("chunked", ["", "1"])
async def test_oversized_response_refused(upstream: Any, chunked: str) -> None:
    async with client(max_bytes=64 * 1024) as c:
        ok = await c.request("GET", f"{upstream.url}/big?size={32 * 1024}&chunked={chunked}")
        assert len(ok.body) == 32 * 1024
        with pytest.raises(PayloadTooLarge):
            await c.request("GET", f"{upstream.url}/big?size={256 * 1024}&chunked={chunked}")


async def test_slow_upstream_times_out(upstream: Any) -> None:
    async with client() as c:
        with pytest.raises(BackendTimeout):
            await c.request("GET", f"{upstream.url}/hang", timeout=0.2)


async def test_refused_connection_is_unavailable(upstream: Any) -> None:
    # a port nothing listens on: bind one, learn its number, close it
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with client() as c:
        with pytest.raises(BackendUnavailable):
            await c.request("GET", f"http://127.0.0.1:{port}/")


async def test_request_before_start_and_bad_allow_list() -> None:
    with pytest.raises(WayportError, match="start"):
        await client().request("GET", "http://example.com/")
    with pytest.raises(ConfigError):
        GuardedClient(GuardPolicy(allow=("not-a-network",)))
