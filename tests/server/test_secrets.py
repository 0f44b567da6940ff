"""Secrets never reach the logs: a canary API key is planted, errors are forced (wrong keys,
upstream failures quoting credentials, a crash), and every captured line is scanned."""

from __future__ import annotations

import httpx
import pytest

from wayport.core.errors import BackendError
from wayport.core.types import ChatRequest, Completion
from wayport.server.settings import ServerSettings
from wayport.testing import Fail, ScriptedBackend

from .helpers import build_stack, captured_logs, chat, serve

pytestmark = pytest.mark.anyio

CANARY = "wp-canary-7f3a9c1e5b2d4680"
STRANGER_KEY = "sk-proj-stranger0123456789"
UPSTREAM_TOKEN = "eyJhbGciOiJIUzI1NiJ9.upstream.token"


class LeakyBackend(ScriptedBackend):
    """Fails like a careless upstream: quoting credentials in its errors."""

    async def complete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        if request.messages[0].get("content") == "crash":
            raise RuntimeError(f"crashed while holding {CANARY}")
        return await super().complete(request, timeout=timeout)


async def test_no_secret_in_any_log_line() -> None:
    backend = LeakyBackend(
        "leaky",
        [
            Fail(BackendError(f"upstream 401 for key {CANARY}")),
            Fail(BackendError(f"upstream said: Authorization: Bearer {UPSTREAM_TOKEN}")),
            Fail(BackendError(f"upstream rejected {STRANGER_KEY}"), after_chunks=1),
        ],
    )
    settings = ServerSettings(api_key=CANARY, access_log=True, version="1")
    stack = build_stack({"chat": backend}, settings=settings)
    good = {"Authorization": f"Bearer {CANARY}"}
    with captured_logs(CANARY) as logs:
        async with serve(stack.app) as url, httpx.AsyncClient(base_url=url) as client:
            statuses = [
                (await client.post("/v1/chat/completions", json=chat(), headers=h)).status_code
                for h in (
                    {"Authorization": f"Bearer {STRANGER_KEY}"},
                    {"Authorization": f"Bearer {CANARY}x"},
                    {"Authorization": CANARY},
                    good,
                    good,
                )
            ]
            streamed = await client.post(
                "/v1/chat/completions", json=chat(stream=True), headers=good
            )
            crashed = await client.post(
                "/v1/chat/completions", json=chat(content="crash"), headers=good
            )
            by_id = await client.get("/healthz", headers={"X-Request-Id": CANARY})
    assert statuses == [401, 401, 401, 502, 502]
    assert "upstream rejected" in streamed.text
    assert crashed.status_code == 500
    assert by_id.status_code == 200

    text = logs.text
    for secret in (CANARY, STRANGER_KEY, UPSTREAM_TOKEN):
        assert secret not in text
    lines = logs.lines()
    events = [line["event"] for line in lines]
    # The forced failures were logged (masked), not silently dropped.
    assert events.count("request failed") == 3
    assert events.count("unhandled error") == 1
    assert events.count("request") == 8
    assert "[REDACTED]" in text
    # uvicorn's own records come through the same renderer.
    assert any(line.get("logger", "").startswith("uvicorn") for line in lines)
