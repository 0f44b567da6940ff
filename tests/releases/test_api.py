"""The release routes over real HTTP (uvicorn on 127.0.0.1:0): versions, diff, a rollout
begun, inspected and promoted, feedback, errors as OpenAI-style 4xx bodies, and the signed
notification webhook each transition sends to a local receiver."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from wayport.core.webhooks import verify_signature
from wayport.net.guard import GuardedClient, GuardPolicy
from wayport.server.app import create_app
from wayport.server.releases_api import with_reconciler
from wayport.server.settings import ServerSettings
from wayport.service.gateway import Gateway
from wayport.service.release_reconciler import Reconciler, WebhookNotifier

from .conftest import STABLE, Env

pytestmark = pytest.mark.anyio

KEY = "wp-test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
SECRET = "release-secret-0123456789"


@asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, ws="none")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


class Receiver:
    """A webhook receiver: keeps every POSTed body and its signature header."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, str]] = []
        self.arrived = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        self.got.append((body, headers.get(b"wayport-signature", b"").decode()))
        self.arrived.set()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def api(env: Env, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Receiver]]:
    receiver = Receiver()
    async with serve(receiver) as hook_url:
        notifier = WebhookNotifier(
            hook_url + "/releases",
            secret=SECRET,
            client=GuardedClient(GuardPolicy(allow=("127.0.0.1/32",))),
        )
        env.releases.notify = notifier
        settings = ServerSettings(api_key=KEY, access_log=False, version="9.9.9")
        app = create_app(
            gateway=Gateway(router=env.agents._model),  # type: ignore[arg-type]
            settings=settings,
            releases=env.releases,
        )
        reconciler = Reconciler(env.releases, notifier=notifier)
        async with (
            serve(with_reconciler(app, reconciler)) as url,
            httpx.AsyncClient(base_url=url, headers=AUTH) as client,
        ):
            yield client, receiver


async def test_versions_rollout_and_promotion_over_http(
    env: Env, api: tuple[httpx.AsyncClient, Receiver]
) -> None:
    client, receiver = api
    r = await client.get("/v1/agents/support/versions")
    assert r.status_code == 200, r.text
    assert [v["version"] for v in r.json()["data"]] == [STABLE.version]

    r = await client.post(
        "/v1/releases",
        json={
            "agent": "support",
            "spec": {"instructions": "v2", "params": {"temperature": 0.2}},
            "strategy": {"kind": "blue_green"},
        },
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["phase"], made["stable"]) == ("paused", STABLE.version)
    candidate = made["candidate"]

    r = await client.get(f"/v1/agents/support/versions/{STABLE.version}/diff/{candidate}")
    assert r.status_code == 200, r.text
    assert r.json()["changes"] == {
        "instructions": ["v1", "v2"],
        "params.temperature": [None, 0.2],
        "params": [{}, None],
    }
    r = await client.get(f"/v1/agents/support/versions/{candidate}")
    assert r.status_code == 200 and r.json()["spec"]["instructions"] == "v2"

    r = await client.get("/v1/releases/support")
    assert r.status_code == 200 and r.json()["state"]["kind"] == "blue_green"

    r = await client.post("/v1/releases/support/promote")
    assert r.status_code == 200, r.text
    assert (r.json()["phase"], r.json()["stable"]) == ("promoted", candidate)
    assert await env.ask("someone") == "v2"

    events = []
    for body, signature in receiver.got:
        assert verify_signature(SECRET, body, signature, now=time.time())
        events.append(json.loads(body)["type"])
    assert events == ["release.progressing", "release.promoted"]


async def test_feedback_and_errors(env: Env, api: tuple[httpx.AsyncClient, Receiver]) -> None:
    client, _ = api
    session = await env.agents.create_session("support")
    run = await env.agents.submit(session.id, [{"role": "user", "content": "hi"}])
    await env.agents.finished(run.id)
    r = await client.post("/v1/feedback", json={"run_id": run.id, "score": 1})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == STABLE.version
    r = await client.post("/v1/feedback", json={"run_id": run.id, "score": 5})
    assert r.status_code == 400 and r.json()["error"]["param"] == "score"
    r = await client.post("/v1/feedback", json={"run_id": "run-nope", "score": 1})
    assert r.status_code == 404
    bad = {"agent": "support", "spec": {"instructions": "x"}, "strategy": {"kind": "nope"}}
    r = await client.post("/v1/releases", json=bad)
    assert r.status_code == 400 and "strategy.kind" in r.json()["error"]["message"]
    r = await client.post("/v1/releases", json={"agent": "ghost", "candidate": "abc"})
    assert r.status_code == 404
    r = await client.post("/v1/releases/support/promote")
    assert r.status_code == 404  # no rollout yet
    r = await client.post("/v1/releases/support/explode")
    assert r.status_code == 404
    r = await client.get("/v1/releases/support/promote")
    assert r.status_code == 405
    r = await client.get("/v1/releases", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


async def test_the_release_cli_against_a_running_server(
    env: Env, api: tuple[httpx.AsyncClient, Receiver], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from wayport.cli.main import app

    client, _ = api
    url = str(client.base_url)
    spec = tmp_path / "candidate.yaml"
    spec.write_text("instructions: v2\n")
    strategy = tmp_path / "strategy.yaml"
    strategy.write_text("kind: canary\nsteps:\n  - set_weight: 25\n  - pause: {}\n")
    runner = CliRunner()

    def cli(*args: str) -> str:
        # the server answers on this loop while the command runs in a thread
        result = runner.invoke(app, [*args, "--url", url, "--api-key", KEY])
        assert result.exit_code == 0, result.output
        return result.output

    made = await asyncio.to_thread(
        cli, "release", "create", "support", "--file", str(spec), "--strategy", str(strategy)
    )
    assert "began: progressing" in made
    await env.reconciler.tick()
    shown = await asyncio.to_thread(cli, "release", "status", "support", "--once")
    assert "paused" in shown and "25%" in shown and "error_rate" in shown
    listed = await asyncio.to_thread(cli, "release", "list", "support")
    assert STABLE.version in listed
    promoted = await asyncio.to_thread(cli, "release", "promote", "support")
    assert "promoted" in promoted
    result = await asyncio.to_thread(
        runner.invoke, app, ["release", "abort", "support", "--url", url, "--api-key", KEY]
    )
    assert result.exit_code == 1 and "promoted" in result.output  # nothing left to abort
