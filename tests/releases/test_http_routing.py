"""Releases over HTTP (uvicorn on 127.0.0.1:0): the preview header reaches the candidate of a
blue-green rollout from chat completions, the Responses API and the native sessions API; an
A/B split by user is sticky across calls; feedback on ``/v1/runs/{id}/feedback``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from wayport.core.release_codec import strategy_from_dict
from wayport.server.app import create_app
from wayport.server.settings import ServerSettings
from wayport.service.gateway import Gateway

from .conftest import STABLE, Env
from .test_api import AUTH, KEY, serve

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(env: Env, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = ServerSettings(api_key=KEY, access_log=False, version="9.9.9")
    app = create_app(
        gateway=Gateway(router=env.agents._model),  # type: ignore[arg-type]
        settings=settings,
        agents=env.agents,
        releases=env.releases,
    )
    async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as made:
        yield made


async def _chat(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None, **body: object
) -> str:
    payload = {"model": "agent/support", "messages": [{"role": "user", "content": "hi"}], **body}
    r = await client.post("/v1/chat/completions", json=payload, headers=headers or {})
    assert r.status_code == 200, r.text
    return str(r.json()["choices"][0]["message"]["content"])


async def _chat_stream(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    payload = {
        "model": "agent/support",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    r = await client.post("/v1/chat/completions", json=payload, headers=headers)
    assert r.status_code == 200, r.text
    import json

    text = ""
    for line in r.text.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices", []):
                text += choice.get("delta", {}).get("content") or ""
    return text


async def _blue_green(env: Env) -> str:
    green = replace(STABLE, instructions="green")
    made = await env.releases.create(
        "default", "support", spec=green, strategy=strategy_from_dict({"kind": "blue_green"})
    )
    assert made.state.candidate == green.version
    return green.version


async def test_the_preview_header_reaches_the_candidate_from_chat_completions(
    env: Env, client: httpx.AsyncClient
) -> None:
    version = await _blue_green(env)
    assert {await _chat(client) for _ in range(5)} == {"v1"}  # nobody sees green unasked
    assert await _chat(client, {"X-Wayport-Preview": "1"}) == "green"
    assert await _chat(client, {"X-Wayport-Version": version}) == "green"
    assert await _chat(client, {"X-Wayport-Version": "not-the-candidate"}) == "v1"
    assert await _chat_stream(client, {"X-Wayport-Preview": "1"}) == "green"
    assert await _chat_stream(client, {}) == "v1"


async def test_the_preview_header_reaches_the_candidate_from_responses(
    env: Env, client: httpx.AsyncClient
) -> None:
    await _blue_green(env)
    body = {"model": "agent/support", "input": "hi"}
    r = await client.post("/v1/responses", json=body, headers={"X-Wayport-Preview": "1"})
    assert r.status_code == 200, r.text
    assert r.json()["output"][0]["content"][0]["text"] == "green"
    again = {**body, "previous_response_id": r.json()["id"]}
    r = await client.post("/v1/responses", json=again)
    assert r.json()["output"][0]["content"][0]["text"] == "green"  # the chain stays on green
    r = await client.post("/v1/responses", json=body)
    assert r.json()["output"][0]["content"][0]["text"] == "v1"


async def test_the_preview_header_reaches_the_candidate_from_sessions(
    env: Env, client: httpx.AsyncClient
) -> None:
    version = await _blue_green(env)
    r = await client.post(
        "/v1/sessions", json={"agent": "support"}, headers={"X-Wayport-Version": version}
    )
    assert r.status_code == 201, r.text
    session = r.json()["id"]
    r = await client.post(f"/v1/sessions/{session}/runs", json={"input": "hi"})
    assert r.status_code == 200, r.text
    assert (r.json()["output"]["content"], r.json()["agent_version"]) == ("green", version)
    r = await client.post("/v1/sessions", json={"agent": "support"})
    plain = r.json()["id"]
    r = await client.post(f"/v1/sessions/{plain}/runs", json={"input": "hi"})
    assert r.json()["output"]["content"] == "v1"


async def test_an_ab_split_by_user_is_sticky_over_http(env: Env, client: httpx.AsyncClient) -> None:
    b = replace(STABLE, instructions="B")
    await env.releases.create(
        "default", "support", spec=b, strategy=strategy_from_dict({"kind": "ab", "split": 50})
    )
    by_field = {f"user-{i}": await _chat(client, user=f"user-{i}") for i in range(16)}
    assert set(by_field.values()) == {"v1", "B"}  # both variants are served
    assert {who: await _chat(client, user=who) for who in by_field} == by_field
    by_header = {
        who: await _chat(client, {"X-Wayport-User": who}) for who in by_field
    }  # the header names the same user: the same variant
    assert by_header == by_field


async def test_feedback_on_a_run(env: Env, client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/sessions", json={"agent": "support"})
    session = r.json()["id"]
    r = await client.post(f"/v1/sessions/{session}/runs", json={"input": "hi"})
    run = r.json()["id"]
    r = await client.post(f"/v1/runs/{run}/feedback", json={"score": -1, "comment": "meh"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "object": "feedback",
        "run_id": run,
        "version": STABLE.version,
        "score": -1,
    }
    counts = await env.releases.store.feedback_counts("default", "support", STABLE.version, since=0)
    assert counts == (0, 1)
    r = await client.post(f"/v1/runs/{run}/feedback", json={"score": 3})
    assert r.status_code == 400 and r.json()["error"]["param"] == "score"
    r = await client.post(f"/v1/runs/{run}/feedback", json={"score": 1, "run_id": "x"})
    assert r.status_code == 400  # the run is the path's
    r = await client.post("/v1/runs/run-nope/feedback", json={"score": 1})
    assert r.status_code == 404
    r = await client.get(f"/v1/runs/{run}/feedback")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = await client.post(
        f"/v1/runs/{run}/feedback", json={"score": 1}, headers={"Authorization": "Bearer no"}
    )
    assert r.status_code == 401
