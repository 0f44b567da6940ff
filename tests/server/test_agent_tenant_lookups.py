"""A tenant's own agents (made with ``PUT /v1/agents/{name}``) are found wherever an agent is
looked up by name, for that tenant only: ``/v1/responses`` (metered, so its run accounting
looks the agent up too), chat completions with ``agent/<name>``, and the console's lists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from wayport.config.agent_defs import validator_for
from wayport.core.agent import AgentSpec
from wayport.core.identity import Role
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.types import ChatRequest
from wayport.models.router import Router
from wayport.runtime.limiter import LocalLimiter
from wayport.server.app import Observability, create_app
from wayport.server.settings import ServerSettings
from wayport.service.agent_defs import AgentDefinitions
from wayport.service.agents import AgentCatalog, AgentService
from wayport.service.gateway import Gateway
from wayport.service.keys import Security
from wayport.service.limits import LimitsService
from wayport.service.metering import Metering
from wayport.store import SqlStore, open_store
from wayport.store.agents import SqlAgentStore
from wayport.testing import ScriptedBackend
from wayport.testing.models import Reply, Step

from .helpers import serve

pytestmark = pytest.mark.anyio

BOOTSTRAP = "wp-bootstrap-key-0123456789abcdef"


def model(request: ChatRequest) -> Step:
    system = next((m["content"] for m in request.messages if m["role"] == "system"), "")
    return Reply(f"instructions: {system}")


@dataclass
class Server:
    url: str
    tokens: dict[str, str]  #: tenant -> an owner key of it

    def client(self, tenant: str) -> httpx.AsyncClient:
        auth = {"Authorization": f"Bearer {self.tokens[tenant]}"}
        return httpx.AsyncClient(base_url=self.url, headers=auth, timeout=30)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    router = Router(
        groups=[ModelGroup(name="m", deployments=(WeightedDeployment(name="m"),))],
        backends={"m": ScriptedBackend("m", script=model)},
        policy=RouterPolicy(max_retries=0),
    )
    gateway = Gateway(router=router)
    agents = AgentService(
        catalog=AgentCatalog([AgentSpec(name="assistant", model="m")]),
        model=gateway,
        open_stores=lambda: open_store(None, state_dir=tmp_path),
    )

    def stores() -> SqlStore:
        found = agents.stores
        assert isinstance(found, SqlStore)
        return found

    def store_for(opened: Any) -> SqlAgentStore:
        assert isinstance(opened, SqlStore)
        return SqlAgentStore(opened.db)

    agents.definitions = AgentDefinitions(store_for=store_for, validate=validator_for(["m"], {}))
    security = Security.build(stores)
    agents.list_tenants = security.tenants.ids
    app = create_app(
        gateway=gateway,
        settings=ServerSettings(api_key=BOOTSTRAP, access_log=False, version="1"),
        agents=agents,
        security=security,
        metering=Metering(limits=LimitsService(limiter=LocalLimiter()), usage=None),
        observability=Observability(console=True),
    )
    async with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as probe:
            await probe.get("/healthz")  # answered once the lifespan has started the agents
        tokens = {}
        for tenant in ("acme", "globex"):
            _, tokens[tenant] = await security.keys.issue(tenant, name="o", role=Role.OWNER)
        yield Server(url=url, tokens=tokens)


async def test_a_tenant_agent_answers_on_responses_and_chat_completions(server: Server) -> None:
    async with server.client("acme") as acme:
        put = await acme.put("/v1/agents/private", json={"model": "m", "instructions": "Mine."})
        assert put.status_code == 201, put.text

        r = await acme.post("/v1/responses", json={"model": "agent/private", "input": "hi"})
        assert r.status_code == 200, r.text
        assert r.json()["output"][0]["content"][0]["text"] == "instructions: Mine."

        chat = {"model": "agent/private", "messages": [{"role": "user", "content": "hi"}]}
        c = await acme.post("/v1/chat/completions", json=chat)
        assert c.status_code == 200, c.text
        assert c.json()["choices"][0]["message"]["content"] == "instructions: Mine."

        async with acme.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as s:
            assert s.status_code == 200
            streamed = "".join([line async for line in s.aiter_lines()])
        assert "Mine." in streamed


async def test_another_tenant_gets_404(server: Server) -> None:
    async with server.client("acme") as acme:
        assert (await acme.put("/v1/agents/private", json={"model": "m"})).status_code == 201
    async with server.client("globex") as globex:
        r = await globex.post("/v1/responses", json={"model": "agent/private", "input": "hi"})
        assert r.status_code == 404, r.text
        chat = {"model": "agent/private", "messages": [{"role": "user", "content": "hi"}]}
        c = await globex.post("/v1/chat/completions", json=chat)
        assert c.status_code == 404, c.text
        assert (await globex.get("/v1/agents/private")).status_code == 404
        # the file's agents are everyone's
        ok = await globex.post("/v1/responses", json={"model": "agent/assistant", "input": "hi"})
        assert ok.status_code == 200, ok.text


async def test_the_console_lists_the_tenants_own_agents(server: Server) -> None:
    async with server.client("acme") as acme:
        assert (await acme.put("/v1/agents/private", json={"model": "m"})).status_code == 201
        listed = (await acme.get("/console/api/agents")).json()["data"]
        assert [a["name"] for a in listed] == ["assistant", "private"]
        page = await acme.get("/console/chat")
        assert page.status_code == 200 and "agent/private" in page.text
    async with server.client("globex") as globex:
        listed = (await globex.get("/console/api/agents")).json()["data"]
        assert [a["name"] for a in listed] == ["assistant"]
        page = await globex.get("/console/chat")
        assert page.status_code == 200 and "agent/private" not in page.text
