"""Privacy requests over real HTTP: ``wayport.yaml`` -> ``bootstrap.build`` -> uvicorn on
loopback, encryption at rest on. Admins only; a tenant never reaches another tenant's data; a
delete really removes the rows (checked in the database)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.server.helpers import serve

from wayport.bootstrap import Runtime, build
from wayport.config.loader import parse_config
from wayport.models.registry import BackendRegistry
from wayport.store import SqlStore
from wayport.store.schema import messages, runs, sessions, usage_ledger
from wayport.store.sealing import generate_key
from wayport.testing import ScriptedBackend
from wayport.testing.models import Reply

pytestmark = pytest.mark.anyio

KEY = "wp-Zq7vRt2LmX9kPw4NcY8bHs6JdF3gTa5E"
SAID = "my passport number is X1234567"


@dataclass
class Served:
    url: str
    runtime: Runtime

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    @property
    def store(self) -> SqlStore:
        stores = self.runtime.agents.stores
        assert isinstance(stores, SqlStore)
        return stores

    async def keys(self, tenant: str) -> dict[str, str]:
        """An admin and a user key of a new tenant."""
        async with self.client(KEY) as system:
            r = await system.post("/v1/admin/tenants", json={"id": tenant, "org": tenant})
            assert r.status_code == 201, r.text
            owner = r.json()["owner_key"]["key"]
        out = {}
        async with self.client(owner) as client:
            for role in ("admin", "user"):
                made = await client.post("/v1/admin/keys", json={"role": role})
                assert made.status_code == 201, made.text
                out[role] = str(made.json()["key"])
        return out

    async def rows(self, tenant: str) -> dict[str, int]:
        """How many rows of each table the tenant has, counted in the database."""

        def job(conn: sa.Connection) -> dict[str, int]:
            return {
                t.name: int(
                    conn.execute(
                        sa.select(sa.func.count()).select_from(t).where(t.c.tenant_id == tenant)
                    ).scalar_one()
                )
                for t in (sessions, messages, runs, usage_ledger)
            }

        return await self.store.db.read(job)

    async def raw_messages(self) -> str:
        return await self.store.db.read(
            lambda conn: repr(list(conn.execute(sa.select(messages.c.content))))
        )


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    registry = BackendRegistry()
    registry.register("scripted", lambda *, name: ScriptedBackend(name, default=Reply("noted")))
    text = f"""\
state_dir: {tmp_path}
server: {{api_key: {KEY}, access_log: false}}
store: {{encryption_keys: "{generate_key("k1")}"}}
deployments:
  m1: {{backend: scripted}}
models:
  m: {{deployments: [m1]}}
agents:
  assistant: {{model: m}}
"""
    runtime = build(parse_config(text, env={}, backend_kinds=registry.names()), registry=registry)
    async with serve(runtime.app) as url:
        async with httpx.AsyncClient(base_url=url) as probe:
            await probe.get("/healthz")  # answered once the lifespan has opened the stores
        yield Served(url=url, runtime=runtime)


async def _session_of(served: Served, token: str, user: str) -> str:
    async with served.client(token) as client:
        r = await client.post(
            "/v1/sessions", json={"agent": "assistant", "metadata": {"user": user}}
        )
        assert r.status_code in (200, 201), r.text
        sid = str(r.json()["id"])
        run = await client.post(f"/v1/sessions/{sid}/runs", json={"input": SAID})
        assert run.status_code == 200 and run.json()["status"] == "completed", run.text
    return sid


def _texts(export: dict[str, Any]) -> list[str]:
    return [m["content"] for s in export["sessions"] for m in s["messages"]]


async def test_export_and_delete_over_http(served: Served) -> None:
    a, b = await served.keys("alpha"), await served.keys("beta")
    sid = await _session_of(served, a["admin"], "u-42")
    await _session_of(served, a["user"], "u-7")  # another user of the same tenant
    assert SAID not in await served.raw_messages()  # sealed at rest ...

    async with served.client(a["admin"]) as admin:
        r = await admin.get("/v1/privacy/export", params={"user": "u-42"})
        assert r.status_code == 200, r.text
        export = r.json()
        assert export["subject"] == {"user": "u-42", "session": None}
        assert [s["id"] for s in export["sessions"]] == [sid]
        assert SAID in _texts(export) and "noted" in _texts(export)  # ... and opened here
        assert len(export["runs"]) == 1 and export["runs"][0]["session_id"] == sid
        by_session = (await admin.get("/v1/privacy/export", params={"session": sid})).json()
        assert [s["id"] for s in by_session["sessions"]] == [sid]
        bad = await admin.get("/v1/privacy/export", params={"user": "u-42", "session": sid})
        assert bad.status_code == 400
        assert (await admin.get("/v1/privacy/export", params={"x": "1"})).status_code == 400

    # the user role may do neither
    async with served.client(a["user"]) as user:
        r = await user.get("/v1/privacy/export", params={"user": "u-42"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_role"
        r = await user.delete("/v1/privacy/data", params={"user": "u-42"})
        assert r.status_code == 403
    async with served.client() as anon:
        assert (await anon.get("/v1/privacy/export", params={"user": "u-42"})).status_code == 401

    # another tenant's admin finds nothing and deletes nothing
    before = await served.rows("alpha")
    assert (before["sessions"], before["messages"], before["runs"]) == (2, 4, 2)
    async with served.client(b["admin"]) as other:
        r = await other.get("/v1/privacy/export", params={"user": "u-42"})
        assert r.status_code == 200
        assert r.json()["sessions"] == [] and r.json()["runs"] == []
        assert (await other.get("/v1/privacy/export", params={"session": sid})).status_code == 404
        assert (await other.delete("/v1/privacy/data", params={"session": sid})).status_code == 404
        r = await other.delete("/v1/privacy/data", params={"user": "u-42"})
        assert r.status_code == 200 and r.json()["deleted"]["sessions"] == 0
    assert await served.rows("alpha") == before

    # the tenant's own admin deletes: gone from the database, the other user untouched
    async with served.client(a["admin"]) as admin:
        r = await admin.delete("/v1/privacy/data", params={"user": "u-42"})
        assert r.status_code == 200, r.text
        assert r.json()["deleted"]["sessions"] == 1
        gone = await admin.get("/v1/privacy/export", params={"user": "u-42"})
        assert gone.json()["sessions"] == [] and gone.json()["runs"] == []
        assert (await admin.get(f"/v1/sessions/{sid}")).status_code == 404
        kept = (await admin.get("/v1/privacy/export", params={"user": "u-7"})).json()
        assert len(kept["sessions"]) == 1
    after = await served.rows("alpha")
    assert after["sessions"] == 1 and after["messages"] == 2 and after["runs"] == 1

    def left_of(conn: sa.Connection) -> int:
        """Rows of the deleted session anywhere (its messages and runs included)."""
        found = 0
        for table, column in ((sessions, "id"), (messages, "session_id"), (runs, "session_id")):
            stmt = sa.select(sa.func.count()).select_from(table)
            stmt = stmt.where(table.c.tenant_id == "alpha", table.c[column] == sid)
            found += int(conn.execute(stmt).scalar_one())
        return found

    assert await served.store.db.read(left_of) == 0
