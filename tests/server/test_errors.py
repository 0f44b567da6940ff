"""Every status the API promises, checked on the raw HTTP exchange."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from wayport.core.errors import BackendUnavailable, UpstreamRateLimited
from wayport.core.types import ChatRequest, Completion
from wayport.server.settings import ServerSettings
from wayport.testing import Fail, ScriptedBackend

from .helpers import AUTH, KEY, asgi_client, build_stack, captured_logs, chat

pytestmark = pytest.mark.anyio


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    return error


async def post(body: object, *, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
    async with asgi_client(build_stack(**kw).app) as client:
        return await client.post("/v1/chat/completions", json=body, headers=headers or AUTH)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer nope"}, "invalid_api_key"),
        ({"Authorization": f"Basic {KEY}"}, "invalid_api_key"),
        ({"Authorization": f"Bearer {KEY}x"}, "invalid_api_key"),
        ({"Authorization": "Bearer"}, "invalid_api_key"),
    ],
)
async def test_401(headers: dict[str, str], code: str) -> None:
    response = await post(chat(), headers=headers or {"X-Nothing": "1"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = error_of(response)
    assert (error["type"], error["code"]) == ("authentication_error", code)
    assert KEY not in response.text


async def test_no_key_configured_means_no_auth() -> None:
    settings = ServerSettings(api_key=None, access_log=False, version="1")
    stack = build_stack(settings=settings)
    async with asgi_client(stack.app) as client:
        response = await client.post("/v1/chat/completions", json=chat())
    assert response.status_code == 200


async def test_404_unknown_route_and_model() -> None:
    async with asgi_client(build_stack().app) as client:
        route = await client.get("/v2/nothing", headers=AUTH)
        model = await client.post("/v1/chat/completions", json=chat("gpt-x"), headers=AUTH)
    assert route.status_code == 404
    assert error_of(route)["type"] == "not_found_error"
    assert model.status_code == 404
    assert error_of(model)["code"] == "model_not_found"
    assert error_of(model)["param"] == "model"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/chat/completions", "POST"),
        ("PUT", "/v1/embeddings", "POST"),
        ("POST", "/v1/models", "GET"),
        ("DELETE", "/v1/models/chat", "GET"),
        ("POST", "/healthz", "GET"),
        ("POST", "/metrics", "GET"),
    ],
)
async def test_405(method: str, path: str, allow: str) -> None:
    async with asgi_client(build_stack().app) as client:
        response = await client.request(method, path, headers=AUTH)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert error_of(response)["code"] == "method_not_allowed"


async def test_413_on_declared_length() -> None:
    settings = ServerSettings(api_key=KEY, max_body_bytes=1024, access_log=False, version="1")
    response = await post(chat(content="x" * 2000), settings=settings)
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"
    assert response.headers["connection"] == "close"


async def test_body_at_the_limit_is_accepted() -> None:
    body = json.dumps(chat(content="x" * 900)).encode()
    settings = ServerSettings(api_key=KEY, max_body_bytes=len(body), access_log=False, version="1")
    async with asgi_client(build_stack(settings=settings).app) as client:
        headers = {**AUTH, "Content-Type": "application/json"}
        response = await client.post("/v1/chat/completions", content=body, headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_415(content_type: str | None) -> None:
    headers = dict(AUTH)
    if content_type:
        headers["Content-Type"] = content_type
    async with asgi_client(build_stack().app) as client:
        response = await client.post(
            "/v1/chat/completions", content=json.dumps(chat()).encode(), headers=headers
        )
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/x+json"]
)
async def test_json_content_types_accepted(content_type: str) -> None:
    headers = {**AUTH, "Content-Type": content_type}
    async with asgi_client(build_stack().app) as client:
        response = await client.post(
            "/v1/chat/completions", content=json.dumps(chat()).encode(), headers=headers
        )
    assert response.status_code == 200


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe", b'{"model": "chat",}', b"[" * 10000])
async def test_400_invalid_json(raw: bytes) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    async with asgi_client(build_stack().app) as client:
        response = await client.post("/v1/chat/completions", content=raw, headers=headers)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ([], None, "JSON object"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "missing required field"),
        ({"model": "chat"}, "messages", "missing required field"),
        ({"model": 5}, "model", "Expected `str`"),
        (chat(messages=[]), "messages", "length >= 1"),
        (chat(messages=[{"role": "king", "content": "x"}]), "messages[0].role", "king"),
        (chat(messages=[{"role": "user"}]), "messages[0].content", "missing"),
        (chat(messages=[{"role": "user", "content": 3}]), "messages[0].content", "Expected"),
        (chat(messages=[{"role": "tool", "content": "x"}]), "messages[0].tool_call_id", "missing"),
        (chat(n=2), "n", "<= 1"),
        (chat(temperature="hot"), "temperature", "Expected"),
        (chat(top_p=1.5), "top_p", "<= 1.0"),
        (chat(stream="yes"), "stream", "Expected"),
        (chat(tools=[{"type": "function"}]), "tools[0].function", "missing"),
        (chat(tool_choice="sometimes"), "tool_choice", "Invalid"),
        (chat(stop=["a", "b", "c", "d", "e"]), "stop", "length <= 4"),
    ],
)
async def test_400_schema_names_the_field(body: object, param: str | None, words: str) -> None:
    response = await post(body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert words in error["message"]
    if param:
        assert error["message"].startswith(param)


async def test_embeddings_400_mixed_inputs() -> None:
    async with asgi_client(build_stack().app) as client:
        response = await client.post(
            "/v1/embeddings", json={"model": "chat", "input": ["a", 1]}, headers=AUTH
        )
    assert response.status_code == 400
    assert error_of(response)["param"] == "input"


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (UpstreamRateLimited("slow down", retry_after=2.2), 429, "3"),
        (BackendUnavailable("down", retry_after=1), 503, "1"),
        (BackendUnavailable("down"), 503, None),
    ],
)
async def test_backend_errors_carry_retry_after(
    error: BackendUnavailable, status: int, retry_after: str | None
) -> None:
    stack = build_stack({"chat": ScriptedBackend("c", [Fail(error)])})
    async with asgi_client(stack.app) as client:
        response = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
    assert response.status_code == status
    assert response.headers.get("retry-after") == retry_after
    assert error_of(response)["message"] == error.message


async def test_request_id_echoed_generated_or_replaced() -> None:
    async with asgi_client(build_stack().app) as client:
        echoed = await client.get("/healthz", headers={"X-Request-Id": "abc-123.x"})
        generated = await client.get("/v1/nothing")
        replaced = await client.get("/healthz", headers={"X-Request-Id": "bad id\twith\ttabs"})
        other = await client.get("/healthz")
    assert echoed.headers["x-request-id"] == "abc-123.x"
    assert generated.headers["x-request-id"].startswith("req-")
    assert replaced.headers["x-request-id"].startswith("req-")
    assert other.headers["x-request-id"] != generated.headers["x-request-id"]


class ExplodingBackend(ScriptedBackend):
    """A backend with a bug: it raises something outside the error tree."""

    async def complete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        raise RuntimeError("kaboom: internal detail")


async def test_unexpected_error_is_a_generic_logged_500() -> None:
    with captured_logs() as logs:
        async with asgi_client(build_stack({"chat": ExplodingBackend("x")}).app) as client:
            response = await client.post(
                "/v1/chat/completions", json=chat(), headers={**AUTH, "X-Request-Id": "rid-42"}
            )
    assert response.status_code == 500
    error = error_of(response)
    assert error["type"] == "server_error"
    assert "rid-42" in error["message"]
    assert "kaboom" not in response.text
    logged = [line for line in logs.lines() if line["event"] == "unhandled error"]
    assert len(logged) == 1
    assert logged[0]["request_id"] == "rid-42"
    assert logged[0]["level"] == "error"
    assert "kaboom" in str(logged[0]["exception"])
