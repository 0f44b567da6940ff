"""The agent admin API over a real uvicorn server on SQLite: ``GET``/``PUT``/``DELETE
/v1/agents/{name}``, validated by the YAML's own model, stored so a restart keeps them, per
tenant, and never changing a run already in progress."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from wayport.config.agent_defs import validator_for
from wayport.config.agents import ToolConfig
from wayport.core.agent import AgentSpec, ToolSpec
from wayport.core.errors import NotFound
from wayport.core.identity import Principal, Role
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.types import ChatRequest
from wayport.models.router import Router
from wayport.runtime.fallbacks import FunctionTools
from wayport.server.app import create_app
from wayport.server.settings import ServerSettings
from wayport.service.agent_defs import AgentDefinitions
from wayport.service.agents import AgentCatalog, AgentService
from wayport.service.gateway import Gateway
from wayport.store import SqlStore, open_store
from wayport.store.agents import SqlAgentStore
from wayport.testing import ScriptedBackend
from wayport.testing.models import Reply, Step

from .helpers import AUTH, KEY, serve

pytestmark = pytest.mark.anyio

HOLD = ToolSpec(name="hold", parameters={"type": "object"})
TOOLS = {"hold": ToolConfig({"type": "python", "function": "tests.server:hold"})}


def model(request: ChatRequest) -> Step:
    """Asks for ``hold`` when told to; answers with the instructions it was given."""
    system = next((m["content"] for m in request.messages if m["role"] == "system"), "")
    last = request.messages[-1]
    if last["role"] == "user" and last.get("content") == "hold":
        call = {"id": "h1", "type": "function", "function": {"name": "hold", "arguments": "{}"}}
        return Reply("", tool_calls=[call])
    return Reply(f"instructions: {system}")


@dataclass
class Harness:
    state: Path
    gate: asyncio.Event
    entered: asyncio.Event

    def service(self) -> AgentService:
        router = Router(
            groups=[ModelGroup(name="m", deployments=(WeightedDeployment(name="m"),))],
            backends={"m": ScriptedBackend("m", script=model)},
            policy=RouterPolicy(max_retries=0),
        )

        async def hold(arguments: Mapping[str, Any]) -> str:
            self.entered.set()
            await self.gate.wait()
            return "released"

        service = AgentService(
            catalog=AgentCatalog([AgentSpec(name="assistant", model="m")]),
            model=Gateway(router=router),
            open_stores=lambda: open_store(None, state_dir=self.state),
            tools=FunctionTools({"hold": (HOLD, hold)}),
        )

        def store_for(stores: Any) -> SqlAgentStore:
            assert isinstance(stores, SqlStore)
            return SqlAgentStore(stores.db)

        service.definitions = AgentDefinitions(
            store_for=store_for, validate=validator_for(["m"], TOOLS)
        )
        return service

    def app(self, service: AgentService) -> Any:
        settings = ServerSettings(api_key=KEY, access_log=False, version="1", max_body_bytes=8192)
        return create_app(
            gateway=Gateway(router=Router(groups=[], backends={})),
            settings=settings,
            agents=service,
        )


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(state=tmp_path, gate=asyncio.Event(), entered=asyncio.Event())


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    app = harness.app(harness.service())
    async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as c:
        yield c


SUPPORT = {
    "description": "answers support questions",
    "instructions": "Be brief.",
    "model": "m",
    "params": {"temperature": 0.2},
    "tools": ["hold"],
    "limits": {"max_steps": 4, "run_timeout": 60},
    "context": {"keep_recent_turns": 2},
    "queue_mode": "enqueue",
}


async def _run(client: httpx.AsyncClient, agent: str, text: str) -> dict[str, Any]:
    s = await client.post("/v1/sessions", json={"agent": agent})
    assert s.status_code == 201, s.text
    r = await client.post(f"/v1/sessions/{s.json()['id']}/runs", json={"input": text})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_put_get_run_replace_delete(client: httpx.AsyncClient) -> None:
    created = await client.put("/v1/agents/support", json=SUPPORT)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["source"], body["revision"], body["model"]) == ("api", 1, "m")
    assert body["limits"]["max_steps"] == 4 and body["context"]["keep_recent_turns"] == 2
    got = (await client.get("/v1/agents/support")).json()
    assert got["version"] == body["version"] and got["instructions"] == "Be brief."
    listed = [a["id"] for a in (await client.get("/v1/agents")).json()["data"]]
    assert listed == ["assistant", "support"]
    assert (await _run(client, "support", "hi"))["output"] == {"content": "instructions: Be brief."}

    replaced = await client.put("/v1/agents/support", json={**SUPPORT, "instructions": "Be kind."})
    assert replaced.status_code == 200 and replaced.json()["revision"] == 2
    assert replaced.json()["version"] != body["version"]
    answer = await _run(client, "support", "hi")
    assert answer["output"] == {"content": "instructions: Be kind."}
    assert answer["agent_version"] == replaced.json()["version"]

    deleted = await client.delete("/v1/agents/support")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert (await client.get("/v1/agents/support")).status_code == 404
    assert (await client.delete("/v1/agents/support")).status_code == 404
    assert (await client.post("/v1/sessions", json={"agent": "support"})).status_code == 404


async def test_config_agents_are_read_only_here(client: httpx.AsyncClient) -> None:
    got = await client.get("/v1/agents/assistant")
    assert got.status_code == 200 and got.json()["source"] == "config"
    for r in (
        await client.delete("/v1/agents/assistant"),
        await client.put("/v1/agents/assistant", json={"model": "m"}),
    ):
        assert r.status_code == 409, r.text
        assert "defined in wayport.yaml" in r.json()["error"]["message"]
        assert r.json()["error"]["code"] == "agent_defined_in_config"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "model"),
        ({"model": "nope"}, "not defined under models"),
        ({"model": "m", "tools": ["ghost"]}, "not defined under tools"),
        ({"model": "m", "limits": {"max_steps": 0}}, "limits.max_steps"),
        ({"model": "m", "queue_mode": "sometimes"}, "queue_mode"),
        ({"model": "m", "surprise": 1}, "surprise"),
        (
            {"model": "m", "instructions": "a", "instructions_file": "/etc/passwd"},
            "instructions_file",
        ),
        ({"model": "m", "instructions_file": "/etc/passwd"}, "not accepted over the API"),
    ],
)
async def test_invalid_definitions_are_clear_400s(
    client: httpx.AsyncClient, body: dict[str, Any], needle: str
) -> None:
    r = await client.put("/v1/agents/bad", json=body)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]
    assert (await client.get("/v1/agents/bad")).status_code == 404  # nothing half-written


async def test_bad_names_and_bodies(client: httpx.AsyncClient) -> None:
    r = await client.put("/v1/agents/-x", json={"model": "m"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "name"
    r = await client.put(
        "/v1/agents/x", content=b"[1]", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    r = await client.put("/v1/agents/x", content=b"model: m", headers={"content-type": "text/yaml"})
    assert r.status_code == 415
    assert (await client.post("/v1/agents/x", json={})).status_code == 405


async def test_a_run_in_progress_keeps_its_version_across_an_edit(
    harness: Harness, client: httpx.AsyncClient
) -> None:
    first = (await client.put("/v1/agents/support", json=SUPPORT)).json()
    s = await client.post("/v1/sessions", json={"agent": "support"})
    sid = s.json()["id"]
    r = await client.post(f"/v1/sessions/{sid}/runs", json={"input": "hold", "mode": "background"})
    run_id = r.json()["id"]
    await harness.entered.wait()  # the run is inside its tool call
    edited = await client.put("/v1/agents/support", json={**SUPPORT, "instructions": "Changed."})
    assert edited.json()["revision"] == 2
    harness.gate.set()
    async with client.stream("GET", f"/v1/runs/{run_id}/stream") as stream:
        _ = [line async for line in stream.aiter_lines()]
    done = (await client.get(f"/v1/runs/{run_id}")).json()
    assert done["status"] == "completed", done
    assert done["agent_version"] == first["version"]
    assert done["output"] == {"content": "instructions: Be brief."}  # the old definition
    after = await _run(client, "support", "hi")
    assert after["output"] == {"content": "instructions: Changed."}


async def test_definitions_survive_a_restart(harness: Harness) -> None:
    first = harness.app(harness.service())
    async with serve(first) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as c:
        assert (await c.put("/v1/agents/kept", json=SUPPORT)).status_code == 201
    second = harness.app(harness.service())  # a new process, same database
    async with serve(second) as url, httpx.AsyncClient(base_url=url, headers=AUTH) as c:
        got = await c.get("/v1/agents/kept")
        assert got.status_code == 200 and got.json()["revision"] == 1
        assert "kept" in [a["id"] for a in (await c.get("/v1/agents")).json()["data"]]


async def test_tenant_agents_are_visible_to_their_tenant_only(harness: Harness) -> None:
    service = harness.service()
    await service.start()
    try:
        defs = service.definitions
        assert defs is not None
        acme = Principal(tenant="acme", role=Role.DEVELOPER)
        await defs.put(acme, "private", {"model": "m"})
        session = await service.create_session("private", tenant="acme")
        assert session.agent == "private"
        with pytest.raises(NotFound):
            await service.create_session("private")  # the default tenant does not see it
        with pytest.raises(NotFound):
            await defs.get("default", "private")
        assert [a.name for a in service.catalog.list("default")] == ["assistant"]
        assert [a.name for a in service.catalog.list("acme")] == ["assistant", "private"]
    finally:
        await service.close()
