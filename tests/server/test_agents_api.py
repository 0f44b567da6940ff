"""The agent routes over a real uvicorn server, on a real SQLite store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from wayport.core.agent import AgentSpec, QueueMode, ToolSpec
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.types import ToolCall
from wayport.models.router import Router
from wayport.runtime.fallbacks import FunctionTools
from wayport.server.app import create_app
from wayport.server.settings import ServerSettings
from wayport.service.agents import AgentCatalog, AgentService
from wayport.service.gateway import Gateway
from wayport.store import open_store
from wayport.testing import ScriptedBackend
from wayport.testing.models import Reply

from .helpers import AUTH, KEY, serve

pytestmark = pytest.mark.anyio

ADD = ToolSpec(name="add", parameters={"type": "object", "required": ["a", "b"]})


async def _add(arguments: Mapping[str, Any]) -> str:
    return str(arguments["a"] + arguments["b"])


def call(name: str, arguments: dict[str, Any]) -> ToolCall:
    return {
        "id": "c1",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, ScriptedBackend]]:
    backend = ScriptedBackend("m", default=Reply("hello from the agent"))
    router = Router(
        groups=[ModelGroup(name="m", deployments=(WeightedDeployment(name="m"),))],
        backends={"m": backend},
        policy=RouterPolicy(max_retries=0),
    )
    gateway = Gateway(router=router)
    agents = AgentService(
        catalog=AgentCatalog(
            [
                AgentSpec(name="calc", model="m", tools=("add",), description="adds"),
                AgentSpec(name="strict", model="m", queue_mode=QueueMode.REJECT),
            ]
        ),
        model=gateway,
        open_stores=lambda: open_store(None, state_dir=tmp_path),
        tools=FunctionTools({"add": (ADD, _add)}),
    )
    settings = ServerSettings(api_key=KEY, access_log=False, version="9.9.9", max_body_bytes=4096)
    app = create_app(gateway=gateway, settings=settings, agents=agents)
    async with serve(app) as url:
        yield url, backend


async def _session(client: httpx.AsyncClient, agent: str = "calc") -> str:
    r = await client.post("/v1/sessions", json={"agent": agent})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_list_agents(server: tuple[str, ScriptedBackend]) -> None:
    url, _ = server
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        r = await client.get("/v1/agents")
    assert r.status_code == 200
    assert [a["id"] for a in r.json()["data"]] == ["calc", "strict"]


async def test_wait_run_with_a_tool_and_paginated_history(
    server: tuple[str, ScriptedBackend],
) -> None:
    url, backend = server
    backend._steps.extend(  # the scripted model: call the tool, then answer
        [Reply("", tool_calls=[call("add", {"a": 2, "b": 2})]), Reply("four")]
    )
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        sid = await _session(client)
        r = await client.post(f"/v1/sessions/{sid}/runs", json={"input": "2+2?"})
        assert r.status_code == 200, r.text
        run = r.json()
        assert run["status"] == "completed" and run["output"] == {"content": "four"}
        assert run["usage"]["completion_tokens"] > 0
        again = await client.get(f"/v1/runs/{run['id']}")
        assert again.json()["status"] == "completed"
        page = (await client.get(f"/v1/sessions/{sid}", params={"limit": 2})).json()
        assert [m["role"] for m in page["messages"]] == ["user", "assistant"]
        assert page["has_more"] is True and page["message_count"] == 4
        rest = (await client.get(f"/v1/sessions/{sid}", params={"after": 2})).json()
        assert [m["role"] for m in rest["messages"]] == ["tool", "assistant"]
        assert rest["messages"][0]["content"] == "4"


async def test_stream_run_and_join_a_finished_one(server: tuple[str, ScriptedBackend]) -> None:
    url, _ = server
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        sid = await _session(client)
        body = {"input": [{"role": "user", "content": "hi"}], "mode": "stream"}
        async with client.stream("POST", f"/v1/sessions/{sid}/runs", json=body) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            events = [json.loads(x[6:]) async for x in r.aiter_lines() if x.startswith("data: ")]
        assert "".join(e["text"] for e in events if e["type"] == "text.delta") == (
            "hello from the agent"
        )
        last = events[-1]
        assert last["type"] == "run.finished" and last["run"]["status"] == "completed"
        async with client.stream("GET", f"/v1/runs/{last['run']['id']}/stream") as r:
            replay = [json.loads(x[6:]) async for x in r.aiter_lines() if x.startswith("data: ")]
        assert [e["type"] for e in replay] == ["run.finished"]


async def test_background_run_then_cancel_is_a_noop_once_finished(
    server: tuple[str, ScriptedBackend],
) -> None:
    url, _ = server
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        sid = await _session(client)
        r = await client.post(
            f"/v1/sessions/{sid}/runs", json={"input": "hi", "mode": "background"}
        )
        # an idle session's run starts at once (created claimed); a busy one's queues
        assert r.status_code == 202 and r.json()["status"] in ("queued", "running")
        run_id = r.json()["id"]
        async with client.stream("GET", f"/v1/runs/{run_id}/stream") as s:
            lines = [x async for x in s.aiter_lines() if x.startswith("event: ")]
        assert lines[-1] == "event: run.finished"
        c = await client.post(f"/v1/runs/{run_id}/cancel")
        assert c.json()["status"] == "completed"


async def test_idempotency_key_returns_the_first_run(server: tuple[str, ScriptedBackend]) -> None:
    url, backend = server
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        sid = await _session(client)
        headers = {"Idempotency-Key": "k-1"}
        first = await client.post(f"/v1/sessions/{sid}/runs", json={"input": "hi"}, headers=headers)
        second = await client.post(
            f"/v1/sessions/{sid}/runs", json={"input": "hi"}, headers=headers
        )
        assert first.json()["id"] == second.json()["id"]
        history = (await client.get(f"/v1/sessions/{sid}")).json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert len(backend.calls) == 1


async def test_errors(server: tuple[str, ScriptedBackend]) -> None:
    url, _ = server
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        r = await client.post("/v1/sessions", json={"agent": "nobody"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "agent_not_found"
        assert (await client.get("/v1/sessions/nope")).status_code == 404
        assert (await client.delete("/v1/sessions/nope")).status_code == 404
        assert (await client.post("/v1/sessions/nope/runs", json={"input": "x"})).status_code == 404
        assert (await client.get("/v1/runs/nope")).status_code == 404
        assert (await client.post("/v1/runs/nope/cancel")).status_code == 404
        sid = await _session(client)
        big = await client.post(f"/v1/sessions/{sid}/runs", json={"input": "x" * 10_000})
        assert big.status_code == 413
        bad = await client.post(f"/v1/sessions/{sid}/runs", json={"input": [{"role": "x"}]})
        assert bad.status_code == 400
        assert (await client.put(f"/v1/sessions/{sid}")).status_code == 405
        assert (await client.delete(f"/v1/sessions/{sid}")).status_code == 200
        assert (await client.get(f"/v1/sessions/{sid}")).status_code == 404
        # nothing half-written: the refused bodies stored no message
        sid = await _session(client)
        assert (await client.get(f"/v1/sessions/{sid}")).json()["message_count"] == 0


async def test_chat_completions_with_an_agent_keeps_the_session(
    server: tuple[str, ScriptedBackend],
) -> None:
    url, backend = server
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        body = {"model": "agent/calc", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"X-Wayport-Session": "conv-1"}
        r = await client.post("/v1/chat/completions", json=body, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "hello from the agent"
        body["messages"] = [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello from the agent"},
            {"role": "user", "content": "again"},
        ]
        body["stream"] = True
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as s:
            data = [x[6:] async for x in s.aiter_lines() if x.startswith("data: ")]
        assert data[-1] == "[DONE]"
        chunks = [json.loads(d) for d in data[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        assert text == "hello from the agent"
        history = (await client.get("/v1/sessions/conv-1")).json()["messages"]
        assert [m["content"] for m in history if m["role"] == "user"] == ["hi", "again"]
        # the second model call saw the whole conversation from the store
        assert len(backend.calls[1].messages) == 3
        # stateless: nothing kept
        r = await client.post(
            "/v1/chat/completions",
            json={"model": "agent/calc", "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.status_code == 200
        missing = await client.post(
            "/v1/chat/completions",
            json={"model": "agent/nobody", "messages": [{"role": "user", "content": "x"}]},
        )
        assert missing.status_code == 404
