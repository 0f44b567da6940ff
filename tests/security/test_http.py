"""Keys, roles and tenants over HTTP, on a real server with agents on SQLite.

The role x route matrix walks the app's own route table, so a route added later is covered
(and fails here until it names the role it needs)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.server.helpers import serve

from wayport.core.agent import AgentSpec, ToolSpec
from wayport.core.identity import Role
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.models.router import Router
from wayport.runtime.fallbacks import FunctionTools
from wayport.server.app import WayportApp, create_app
from wayport.server.settings import ServerSettings
from wayport.service.agents import AgentCatalog, AgentService
from wayport.service.audit import hash_arguments
from wayport.service.gateway import Gateway
from wayport.service.keys import Security
from wayport.store import SqlStore, open_store
from wayport.testing import ScriptedBackend
from wayport.testing.models import Reply

pytestmark = pytest.mark.anyio

BOOTSTRAP = "wp-bootstrap-key-0123456789abcdef"
ADD = ToolSpec(name="add", parameters={"type": "object", "required": ["a", "b"]})


async def _add(arguments: Mapping[str, Any]) -> str:
    return str(arguments["a"] + arguments["b"])


@dataclass
class Server:
    url: str
    app: WayportApp
    security: Security
    backend: ScriptedBackend
    keys: dict[Role, str]  #: a key of each role, in the default tenant

    def client(self, token: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    backend = ScriptedBackend("m", default=Reply("hello"))
    router = Router(
        groups=[ModelGroup(name="m", deployments=(WeightedDeployment(name="m"),))],
        backends={"m": backend},
        policy=RouterPolicy(max_retries=0),
    )
    gateway = Gateway(router=router)
    agents = AgentService(
        catalog=AgentCatalog([AgentSpec(name="calc", model="m", tools=("add",))]),
        model=gateway,
        open_stores=lambda: open_store(None, state_dir=tmp_path),
        tools=FunctionTools({"add": (ADD, _add)}),
    )

    def stores() -> SqlStore:
        found = agents.stores
        assert isinstance(found, SqlStore)
        return found

    security = Security.build(stores)
    agents.list_tenants = security.tenants.ids
    agents.watch = security.audit.watch
    settings = ServerSettings(api_key=BOOTSTRAP, access_log=False, version="1")
    app = create_app(gateway=gateway, settings=settings, agents=agents, security=security)
    assert isinstance(app, WayportApp)
    async with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as probe:
            await probe.get("/healthz")  # answered once the lifespan has started the agents
        keys = {}
        for role in Role:
            _, keys[role] = await security.keys.issue("default", name=role.label, role=role)
        yield Server(url=url, app=app, security=security, backend=backend, keys=keys)


def concrete(name: str) -> str:
    return name.replace("{model}", "m").replace("{id}", "nope").replace("{", "").replace("}", "")


async def test_every_secured_route_names_a_role_for_every_method(server: Server) -> None:
    for r, _ in server.app.route_table():
        if r.secured:
            assert set(r.roles) == set(r.methods), f"{r.name}: map each method to a role"


async def test_role_by_route_matrix(server: Server) -> None:
    """Each secured route and method, with a key of each role: 403 exactly when the role is
    below the route's; never 401 for a valid key; 401 without one."""
    seen = 0
    for r, _ in server.app.route_table():
        for method in sorted(r.methods):
            path = concrete(r.name)
            if r.paths is not None:  # a prefix route: a sub-path that takes the method
                path = next(
                    "/".join("nope" if s is None else s for s in t.segments)
                    for t in r.paths.templates
                    if method in t.methods
                )
            if not r.secured:
                async with server.client(None) as anon:
                    status = (await anon.request(method, path)).status_code
                assert status not in (401, 403), (method, path, status)
                continue
            async with server.client(None) as anon:
                assert (await anon.request(method, path)).status_code == 401, (method, path)
            need = r.roles[method]
            for role, token in server.keys.items():
                async with server.client(token) as client:
                    status = (await client.request(method, path)).status_code
                if role < need:
                    assert status == 403, (method, path, role.label, status)
                else:
                    assert status not in (401, 403), (method, path, role.label, status)
                seen += 1
    assert seen >= 6 * 12


async def test_unknown_paths_ask_for_a_key_first(server: Server) -> None:
    async with server.client(None) as anon:
        assert (await anon.get("/v1/secret-admin-thing")).status_code == 401
    async with server.client(server.keys[Role.VIEWER]) as viewer:
        assert (await viewer.get("/v1/secret-admin-thing")).status_code == 404


async def test_scoped_keys_reach_only_their_scopes(server: Server) -> None:
    _, token = await server.security.keys.issue(
        "default", name="models only", role=Role.ADMIN, scopes=frozenset({"models"})
    )
    async with server.client(token) as client:
        assert (await client.get("/v1/models")).status_code == 200
        r = await client.get("/v1/agents")
        assert r.status_code == 403 and r.json()["error"]["code"] == "out_of_scope"


async def test_admin_api_keys_lifecycle(server: Server) -> None:
    async with server.client(server.keys[Role.ADMIN]) as admin:
        r = await admin.post("/v1/admin/keys", json={"name": "ci", "role": "deployer"})
        assert r.status_code == 201, r.text
        made = r.json()
        assert made["role"] == "deployer" and made["key"].startswith(made["prefix"] + "_")
        too_high = await admin.post("/v1/admin/keys", json={"role": "owner"})
        assert too_high.status_code == 403
        bad = await admin.post("/v1/admin/keys", json={"role": "emperor"})
        assert bad.status_code == 400
        listed = (await admin.get("/v1/admin/keys")).json()["data"]
        assert made["id"] in [k["id"] for k in listed]
        assert all("key" not in k and "hash" not in k for k in listed)
        async with server.client(made["key"]) as ci:
            assert (await ci.get("/v1/models")).status_code == 200
            gone = await admin.delete(f"/v1/admin/keys/{made['id']}")
            assert gone.status_code == 200 and gone.json()["revoked_at"] is not None
            refused = await ci.get("/v1/models")
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "api_key_revoked"
        audit = (await admin.get("/v1/admin/audit")).json()["data"]
        assert [e["action"] for e in audit] == ["key.create", "key.revoke"]
        csv_text = (await admin.get("/v1/admin/audit/export?format=csv")).text
        assert csv_text.splitlines()[0].startswith("seq,at,actor,action")
        jsonl = (await admin.get("/v1/admin/audit/export")).text.splitlines()
        assert [json.loads(x)["seq"] for x in jsonl] == [1, 2]
        assert (await admin.get("/v1/admin/audit/verify")).json() == {"ok": True, "entries": 2}
        assert (await admin.get("/v1/admin/audit/export?format=xml")).status_code == 400


async def _tenant_key(server: Server, tenant_id: str, role: str = "user") -> str:
    async with server.client(BOOTSTRAP) as system:
        r = await system.post("/v1/admin/tenants", json={"id": tenant_id, "org": tenant_id})
        assert r.status_code == 201, r.text
        owner = r.json()["owner_key"]["key"]
    async with server.client(owner) as client:
        made = await client.post("/v1/admin/keys", json={"role": role})
        assert made.status_code == 201, made.text
        return str(made.json()["key"])


async def test_another_tenants_ids_answer_404(server: Server) -> None:
    a, b = await _tenant_key(server, "alpha"), await _tenant_key(server, "beta")
    server.backend._steps.extend(
        [
            Reply(
                "",
                tool_calls=[
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
                    }
                ],
            ),
            Reply("five"),
        ]
    )
    async with server.client(a) as alice, server.client(b) as bob:
        sid = (await alice.post("/v1/sessions", json={"agent": "calc"})).json()["id"]
        run = await alice.post(f"/v1/sessions/{sid}/runs", json={"input": "2+3?"})
        assert run.status_code == 200 and run.json()["status"] == "completed", run.text
        rid = run.json()["id"]
        resp = await alice.post("/v1/responses", json={"model": "m", "input": "hi"})
        assert resp.status_code == 200, resp.text
        resp_id = resp.json()["id"]
        for method, path in [
            ("GET", f"/v1/sessions/{sid}"),
            ("POST", f"/v1/sessions/{sid}/runs"),
            ("DELETE", f"/v1/sessions/{sid}"),
            ("GET", f"/v1/runs/{rid}"),
            ("GET", f"/v1/runs/{rid}/stream"),
            ("POST", f"/v1/runs/{rid}/cancel"),
            ("GET", f"/v1/responses/resp_{rid}"),
            ("GET", f"/v1/responses/{resp_id}"),
        ]:
            body = {"input": "hi"} if method == "POST" and path.endswith("/runs") else None
            r = await bob.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
        # still there for its own tenant, and in the default tenant nothing leaked either
        assert (await alice.get(f"/v1/sessions/{sid}")).status_code == 200
        assert (await alice.get(f"/v1/responses/{resp_id}")).status_code == 200
        async with server.client(server.keys[Role.VIEWER]) as default_viewer:
            assert (await default_viewer.get(f"/v1/runs/{rid}")).status_code == 404
    await server.security.audit.drain()
    trail = [e for e in await server.security.audit.entries("alpha") if e.action == "run.finished"]
    assert len(trail) == 1
    details = trail[0].details
    assert details["run_id"] == rid and details["agent"] == "calc" and details["model"] == "m"
    assert details["tools"] == [
        {"name": "add", "arguments_sha256": hash_arguments('{"a": 2, "b": 3}')}
    ]
    assert '"a": 2' not in json.dumps(dict(details))
    assert await server.security.audit.entries("beta") != []  # its own tenant.create only
    assert all(e.action != "run.finished" for e in await server.security.audit.entries("beta"))
