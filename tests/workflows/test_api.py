"""Workflows from ``wayport.yaml`` through the composition root and the HTTP API: start a run,
watch it pause for approval, approve it, list it; the signed inbound webhook; config errors."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from wayport.bootstrap import build
from wayport.cli.runs import show_runs
from wayport.config.loader import parse_config
from wayport.core.errors import ConfigError, NotFound
from wayport.models.registry import BackendRegistry
from wayport.service.workflows import sign
from wayport.testing import Reply, ScriptedBackend

pytestmark = pytest.mark.anyio
SECRET = "hook-secret-0123456789abcdef"

CONFIG = """\
server: {{host: 127.0.0.1, port: 0, access_log: false, metrics: false}}
state_dir: {state}
deployments:
  chat: {{backend: scripted}}
models:
  chat: {{deployments: [chat]}}
tools:
  record: {{type: python, function: "workflow_sample_tools:record"}}
workflows:
  hello:
    inputs: {{name: {{required: true}}}}
    steps:
      - id: greet
        llm: {{model: chat, prompt: "Say hi to {{{{ input.name }}}}"}}
      - id: ok
        approval: {{message: "Send '{{{{ steps.greet.output }}}}'?"}}
      - id: log
        needs: ok
        tool: {{name: record, args: {{label: "{{{{ steps.greet.output }}}}"}}}}
    output: "{{{{ steps.log.output.label }}}}"
    triggers: {{webhook_secret: {secret}}}
"""


def registry() -> BackendRegistry:
    reg = BackendRegistry()
    reg.register("scripted", lambda *, name: ScriptedBackend(name, default=Reply("hello Ada")))
    return reg


@asynccontextmanager
async def served(text: str) -> AsyncIterator[httpx.AsyncClient]:
    config = parse_config(text, env={}, backend_kinds={"scripted"})
    runtime = build(config, registry=registry())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(
        uvicorn.Config(runtime.app, lifespan="on", log_config=None, access_log=False, ws="none")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
            yield client
    finally:
        server.should_exit = True
        await task
        sock.close()


async def until(client: httpx.AsyncClient, run_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        body: dict[str, Any] = (await client.get(f"/v1/workflow-runs/{run_id}")).json()
        if body["status"] == status:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.01)  # polling for a condition


async def test_run_approve_and_list_over_http(
    tmp_path: Path,
    side_effects: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    async with served(CONFIG.format(state=tmp_path / "state", secret=SECRET)) as client:
        listed = (await client.get("/v1/workflows")).json()["data"]
        assert [(w["id"], w["webhook"]) for w in listed] == [("hello", True)]
        missing = await client.post("/v1/workflows/hello/runs", json={"input": {}})
        assert (missing.status_code, missing.json()["error"]["code"]) == (400, "missing_input")
        assert (await client.post("/v1/workflows/nope/runs", json={})).status_code == 404
        broken = await client.post(
            "/v1/workflows/hello/runs",
            content=b"{nope",
            headers={"content-type": "application/json"},
        )
        assert broken.status_code == 400
        started = await client.post(
            "/v1/workflows/hello/runs",
            json={"input": {"name": "Ada"}},
            headers={"Idempotency-Key": "first"},
        )
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
        again = await client.post(
            "/v1/workflows/hello/runs",
            json={"input": {"name": "Ada"}},
            headers={"Idempotency-Key": "first"},
        )
        assert again.json()["id"] == run_id
        waiting = await until(client, run_id, "waiting")
        steps = {s["path"]: s for s in waiting["steps"]}
        assert steps["greet"]["output"] == "hello Ada"
        assert steps["ok"]["output"] == {"message": "Send 'hello Ada'?"}
        approved = await client.post(f"/v1/workflow-runs/{run_id}/approve", json={})
        assert approved.status_code == 200, approved.text
        done = await until(client, run_id, "completed")
        assert done["output"] == "hello Ada"
        twice = await client.post(f"/v1/workflow-runs/{run_id}/approve", json={})
        assert twice.status_code == 409
        runs = (await client.get("/v1/workflow-runs", params={"status": "completed"})).json()
        assert [r["id"] for r in runs["data"]] == [run_id]
        assert (await client.get("/v1/workflow-runs", params={"limit": 0})).status_code == 400
        assert (await client.get("/v1/workflow-runs/wfr-missing")).status_code == 404
        url = str(client.base_url)
        capsys.readouterr()
        common = {"api_key": None, "workflow": None, "status": None, "limit": 20}
        assert await show_runs(url, run_id=None, watch=False, **common) == 0
        assert run_id in capsys.readouterr().out
        assert await show_runs(url, run_id=run_id, watch=True, **common) == 0
        shown = capsys.readouterr().out
        assert "3/3 steps done" in shown and "approval" in shown and "hello Ada" in shown
        with pytest.raises(NotFound):
            await show_runs(url, run_id="wfr-missing", watch=False, **common)


async def test_signed_webhook_starts_a_run(tmp_path: Path, side_effects: Path) -> None:
    async with served(CONFIG.format(state=tmp_path / "state", secret=SECRET)) as client:
        body = b'{"name": "Grace"}'
        bad = await client.post(
            "/hooks/workflows/hello", content=body, headers={"x-wayport-signature": "sha256=00"}
        )
        assert bad.status_code == 401
        unsigned = await client.post("/hooks/workflows/hello", content=body)
        assert unsigned.status_code == 401
        good = await client.post(
            "/hooks/workflows/hello",
            content=body,
            headers={"x-wayport-signature": sign(SECRET, body), "x-wayport-delivery": "d-1"},
        )
        assert good.status_code == 202, good.text
        assert (good.json()["trigger"], good.json()["input"]) == ("webhook", {"name": "Grace"})
        cancelled = await client.post(f"/v1/workflow-runs/{good.json()['id']}/cancel")
        assert cancelled.json()["status"] == "cancelled"


def test_config_errors_name_the_problem(tmp_path: Path) -> None:
    cyclic = CONFIG.format(state=tmp_path, secret=SECRET).replace("needs: ok", "needs: [ok, log]")
    with pytest.raises(ConfigError, match="depends on itself"):
        parse_config(cyclic, env={}, backend_kinds={"scripted"})
    unknown = CONFIG.format(state=tmp_path, secret=SECRET).replace("name: record", "name: nope")
    config = parse_config(unknown, env={}, backend_kinds={"scripted"})
    with pytest.raises(ConfigError, match="step log names unknown tool 'nope'"):
        build(config, registry=registry())
    bad_cron = CONFIG.format(state=tmp_path, secret=SECRET).replace(
        "triggers: {", 'triggers: {cron: ["99 * * * *"], '
    )
    with pytest.raises(ConfigError, match="minute"):
        parse_config(bad_cron, env={}, backend_kinds={"scripted"})
