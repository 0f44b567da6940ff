"""The console over real HTTP: signing in, the cookie's protections, pages, the JSON routes,
the web chat's stream, and what the dashboard then shows (the request, its tokens, its trace)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from tests.console.conftest import AUTH, KEY, config_text, served

pytestmark = pytest.mark.anyio
CONSOLE = {"x-wayport-console": "1"}


async def signed_in(client: httpx.AsyncClient) -> None:
    answer = await client.post("/console/login", data={"key": KEY})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/console"


def sse_text(body: str) -> str:
    text = ""
    for frame in body.split("\n\n"):
        if frame.startswith("data: ") and frame != "data: [DONE]":
            chunk = json.loads(frame[6:])
            for choice in chunk.get("choices") or []:
                text += choice["delta"].get("content") or ""
    return text


async def test_sign_in_sets_a_protected_cookie_and_pages_need_it(tmp_path: Path) -> None:
    async with served(config_text(tmp_path)) as s, httpx.AsyncClient(base_url=s.url) as client:
        page = await client.get("/console")
        assert page.status_code == 303
        assert page.headers["location"] == "/console/login"
        login = await client.get("/console/login")
        assert login.status_code == 200
        assert "default-src 'self'" in login.headers["content-security-policy"]
        assert 'name="key"' in login.text

        wrong = await client.post("/console/login", data={"key": "not-the-key-at-all"})
        assert wrong.status_code == 401
        assert "set-cookie" not in wrong.headers
        assert "was not accepted" in wrong.text

        right = await client.post("/console/login", data={"key": KEY})
        assert right.status_code == 303
        cookie = right.headers["set-cookie"]
        for attribute in ("HttpOnly", "SameSite=Strict", "Path=/console"):
            assert attribute in cookie
        assert "Secure" not in cookie  # plain http on loopback

        dashboard = await client.get("/console")
        assert dashboard.status_code == 200
        assert "text/html" in dashboard.headers["content-type"]
        assert dashboard.headers["x-frame-options"] == "DENY"
        assert "default · owner" in dashboard.text
        for path in (
            "/console/chat",
            "/console/agents",
            "/console/releases",
            "/console/sessions",
            "/console/usage",
            "/console/audit",
        ):
            assert (await client.get(path)).status_code == 200, path

        out = await client.post("/console/logout")
        assert out.status_code == 303
        assert "Max-Age=0" in out.headers["set-cookie"]
        assert (await client.get("/console")).status_code == 303


async def test_the_api_refuses_strangers_and_cross_site_writes(tmp_path: Path) -> None:
    async with served(config_text(tmp_path)) as s, httpx.AsyncClient(base_url=s.url) as client:
        assert (await client.get("/console/api/overview")).status_code == 401
        bad = await client.get("/console/api/overview", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        # The API also answers to the ordinary header, for scripts.
        assert (await client.get("/console/api/overview", headers=AUTH)).status_code == 200

        evil = await client.post(
            "/console/login", data={"key": KEY}, headers={"Origin": "http://evil.example"}
        )
        assert evil.status_code == 403
        await signed_in(client)
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        forged = await client.post("/console/api/chat", json=body)  # no console header
        assert forged.status_code == 403
        assert forged.json()["error"]["code"] == "cross_site"


async def test_chat_streams_and_the_dashboard_shows_request_tokens_and_trace(
    tmp_path: Path,
) -> None:
    async with served(config_text(tmp_path)) as s, httpx.AsyncClient(base_url=s.url) as client:
        await signed_in(client)
        body = {
            "model": "m",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hello console"}],
        }
        async with client.stream("POST", "/console/api/chat", json=body, headers=CONSOLE) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            text = sse_text((await r.aread()).decode())
        assert text == "echo: hello console"

        recent = (await client.get("/console/api/requests")).json()["data"]
        chat = next(x for x in recent if x["route"] == "/console/api/chat")
        assert chat["status"] == 200
        assert chat["model"] == "m"
        assert chat["tokens_in"] > 0 and chat["tokens_out"] > 0
        assert len(chat["trace_id"]) == 32

        overview = (await client.get("/console/api/overview?minutes=5")).json()
        assert overview["summary"]["requests"] >= 1
        assert overview["summary"]["tokens_out"] >= chat["tokens_out"]
        assert len(overview["points"]) == 5
        assert overview["models"] == ["m"]

        spans = (await client.get(f"/console/api/traces/{chat['trace_id']}")).json()["spans"]
        names = [sp["name"] for sp in spans]
        assert "POST /console/api/chat" in names
        llm = next(sp for sp in spans if sp["name"] == "chat m")
        server = next(sp for sp in spans if sp["name"] == "POST /console/api/chat")
        assert llm["parent_id"] == server["span_id"]
        assert llm["attributes"]["gen_ai.operation.name"] == "chat"
        assert llm["attributes"]["gen_ai.request.model"] == "m"
        assert llm["attributes"]["gen_ai.usage.output_tokens"] == chat["tokens_out"]
        assert llm["attributes"]["wayport.deployment"] == "desk"

        assert (await client.get("/console/api/traces/" + "0" * 32)).status_code == 404
        assert (await client.get("/console/api/overview?minutes=0")).status_code == 400
        assert (await client.get("/console/api/nothing")).status_code == 404


async def test_agents_sessions_escalations_and_run_traces(tmp_path: Path) -> None:
    async with served(config_text(tmp_path)) as s, httpx.AsyncClient(base_url=s.url) as client:
        session = await client.post("/v1/sessions", json={"agent": "support"}, headers=AUTH)
        assert session.status_code in (200, 201), session.text
        sid = session.json()["id"]
        run = await client.post(
            f"/v1/sessions/{sid}/runs", json={"input": "a human, please"}, headers=AUTH
        )
        assert run.status_code == 200, run.text
        assert run.json()["status"] == "completed"

        await signed_in(client)
        agents = (await client.get("/console/api/agents")).json()["data"]
        assert [a["name"] for a in agents] == ["support"]
        assert agents[0]["versions"] == [agents[0]["version"]]
        releases = (await client.get("/console/api/releases")).json()
        assert releases["data"][0]["version"] == agents[0]["version"]

        listed = (await client.get("/console/api/sessions")).json()["data"]
        assert sid in [x["id"] for x in listed]
        transcript = (await client.get(f"/console/api/sessions/{sid}")).json()
        roles = [m["role"] for m in transcript["messages"]]
        assert roles == ["user", "assistant", "tool", "assistant"]
        assert transcript["messages"][1]["tool_calls"][0]["function"]["name"] == "escalate"
        assert (await client.get("/console/api/sessions/sess-nope")).status_code == 404

        summary = (await client.get("/console/api/overview")).json()["summary"]
        assert summary["escalations"] == 1
        assert summary["runs_completed"] == 1
        assert summary["completion_rate"] == 1.0

        metrics = (await client.get("/metrics", headers=AUTH)).text
        assert 'wayport_agent_escalations_total{agent="support"} 1.0' in metrics
        assert 'wayport_agent_runs_total{agent="support",status="completed"} 1.0' in metrics
        assert (
            'wayport_tool_calls_total{agent="support",outcome="ok",tool="escalate"} 1.0' in metrics
        )

        # The run happens inside the request that started it: one trace from ingress to tool.
        traces = (await client.get("/console/api/traces")).json()["data"]
        run_trace = next(t for t in traces if t["name"] == "POST /v1/sessions/{id}")
        spans = (await client.get(f"/console/api/traces/{run_trace['trace_id']}")).json()["spans"]
        by_name = {sp["name"]: sp for sp in spans}
        agent_span = by_name["invoke_agent support"]
        assert agent_span["parent_id"] == run_trace["span_id"]
        assert agent_span["attributes"]["gen_ai.agent.name"] == "support"
        assert agent_span["attributes"]["gen_ai.conversation.id"] == sid
        tool = by_name["execute_tool escalate"]
        assert tool["parent_id"] == agent_span["span_id"]
        assert tool["attributes"]["gen_ai.tool.call.id"] == "call-esc"
        chats = [sp for sp in spans if sp["name"] == "chat m"]
        assert len(chats) == 2
        assert all(sp["parent_id"] == agent_span["span_id"] for sp in chats)


async def test_static_files_come_from_the_package(tmp_path: Path) -> None:
    async with served(config_text(tmp_path)) as s, httpx.AsyncClient(base_url=s.url) as client:
        js = await client.get("/console/static/console.js")
        assert js.status_code == 200
        assert js.headers["content-type"].startswith("text/javascript")
        assert "textContent" in js.text
        # No CDN: the only absolute URL is the SVG namespace name, which is never fetched.
        elsewhere = js.text.replace("http://www.w3.org/2000/svg", "")
        assert "http://" not in elsewhere and "https://" not in elsewhere
        css = await client.get("/console/static/console.css")
        assert css.headers["content-type"].startswith("text/css")
        for bad in ("nope.js", "..%2Fpages.py", "__init__.py", ".hidden.js"):
            assert (await client.get("/console/static/" + bad)).status_code == 404, bad


async def test_the_console_can_be_turned_off_and_without_a_key_is_open_on_loopback(
    tmp_path: Path,
) -> None:
    off = config_text(tmp_path / "a", extra="telemetry:\n  console: false\n")
    async with served(off) as s, httpx.AsyncClient(base_url=s.url) as client:
        assert (await client.get("/console", headers=AUTH)).status_code == 404
    open_ = config_text(tmp_path / "b", key=None)
    async with served(open_) as s, httpx.AsyncClient(base_url=s.url) as client:
        page = await client.get("/console")
        assert page.status_code == 200
        assert "default · owner" in page.text


async def test_cost_and_usage_come_from_the_usage_ledger(tmp_path: Path) -> None:
    priced = "pricing:\n  m: {input: 1000000, output: 2000000}\n"  # $1 and $2 a token
    async with (
        served(config_text(tmp_path, extra=priced)) as s,
        httpx.AsyncClient(base_url=s.url, headers=AUTH) as client,
    ):
        body = {"model": "m", "messages": [{"role": "user", "content": "price me"}]}
        answer = (await client.post("/v1/chat/completions", json=body)).json()
        usage = answer["usage"]
        expected = usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0
        # The ledger records the request as it ends, which may be just after the answer.
        for _ in range(200):
            overview = (await client.get("/console/api/overview?minutes=5")).json()
            if overview["summary"]["cost"]:
                break
            await asyncio.sleep(0.01)
        by_model = (await client.get("/console/api/usage?group_by=model")).json()
        bad = await client.get("/console/api/usage?group_by=colour")
    assert overview["summary"]["cost"] == pytest.approx(expected)
    assert sum(p["cost"] for p in overview["points"]) == pytest.approx(expected)
    assert by_model["available"] is True
    row = next(r for r in by_model["data"] if r["group"] == "m")
    assert row["cost"] == pytest.approx(expected)
    assert row["requests"] == 1
    assert bad.status_code == 400


async def test_the_audit_log_needs_an_admin_and_shows_key_changes(tmp_path: Path) -> None:
    async with (
        served(config_text(tmp_path)) as s,
        httpx.AsyncClient(base_url=s.url, headers=AUTH) as client,
    ):
        created = await client.post(
            "/v1/admin/keys", json={"name": "console-test", "role": "viewer"}
        )
        assert created.status_code == 201, created.text
        viewer = {"Authorization": f"Bearer {created.json()['key']}"}
        audit = (await client.get("/console/api/audit")).json()
        as_viewer = await client.get("/console/api/audit", headers=viewer)
        page = await client.get("/console/audit", headers=viewer)
        overview = await client.get("/console/api/overview", headers=viewer)
    assert audit["available"] is True
    assert any(e["action"].startswith("key.") for e in audit["data"])
    assert as_viewer.status_code == 403
    assert page.status_code == 403
    assert overview.status_code == 200  # a viewer reads the dashboard


async def test_the_releases_page_shows_a_rollout_in_progress(tmp_path: Path) -> None:
    async with (
        served(config_text(tmp_path)) as s,
        httpx.AsyncClient(base_url=s.url, headers=AUTH) as client,
    ):
        before = (await client.get("/console/api/releases")).json()
        started = await client.post(
            "/v1/releases",
            json={"agent": "support", "spec": {"instructions": "Be brief, or escalate."}},
        )
        assert started.status_code in (200, 201), started.text
        after = (await client.get("/console/api/releases")).json()
    assert before["available"] is True
    assert before["rollouts"] == []
    (rollout,) = after["rollouts"]
    assert rollout["agent"] == "support"
    assert rollout["stable"] == before["data"][0]["version"]
    assert rollout["candidate"] and rollout["candidate"] != rollout["stable"]
    assert rollout["candidate"] in after["data"][0]["versions"]


async def test_each_tenant_sees_only_its_own_requests_traces_and_sessions(tmp_path: Path) -> None:
    async with (
        served(config_text(tmp_path)) as s,
        httpx.AsyncClient(base_url=s.url, headers=AUTH) as client,
    ):
        made = await client.post("/v1/admin/tenants", json={"id": "acme"})
        assert made.status_code == 201, made.text
        acme = {"Authorization": f"Bearer {made.json()['owner_key']['key']}"}
        body = {"model": "m", "messages": [{"role": "user", "content": "acme here"}]}
        assert (await client.post("/v1/chat/completions", json=body, headers=acme)).is_success
        session = await client.post("/v1/sessions", json={"agent": "support"}, headers=acme)
        assert session.status_code == 201, session.text
        sid = session.json()["id"]
        ran = await client.post(f"/v1/sessions/{sid}/runs", json={"input": "hi"}, headers=acme)
        assert ran.status_code == 200, ran.text

        mine = (await client.get("/console/api/requests", headers=acme)).json()["data"]
        theirs = (await client.get("/console/api/requests")).json()["data"]
        acme_trace = next(r for r in mine if r["route"] == "/v1/chat/completions")["trace_id"]
        as_default = await client.get(f"/console/api/traces/{acme_trace}")
        as_acme = await client.get(f"/console/api/traces/{acme_trace}", headers=acme)
        acme_sessions = (await client.get("/console/api/sessions", headers=acme)).json()["data"]
        default_sessions = (await client.get("/console/api/sessions")).json()["data"]
        default_summary = (await client.get("/console/api/overview")).json()["summary"]
    assert [r["route"] for r in mine].count("/v1/chat/completions") == 1
    assert all(r["route"] != "/v1/chat/completions" for r in theirs)
    assert as_default.status_code == 404
    assert as_acme.status_code == 200
    assert [x["id"] for x in acme_sessions] == [session.json()["id"]]
    assert session.json()["id"] not in [x["id"] for x in default_sessions]
    assert default_summary["tokens_in"] == 0
