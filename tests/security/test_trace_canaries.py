"""Canary secrets never reach a trace: with tracing on and spans exported over OTLP/HTTP to a
local receiver, requests fail on the secrets (an upstream answering 401 that quotes its key, a
run failing on it, a wrong key embedding the admin key, a request id carrying a secret), and no
span -- name, attribute, event or status -- in the console's in-memory traces or in the raw
protobuf the exporter posted holds a canary. The failures do reach the traces, redacted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from tests.server.helpers import serve
from tests.server.test_canary_secrets import ADMIN, CANARIES, CONFIG, UPSTREAM, WEBHOOK, _env

from wayport.bootstrap import build
from wayport.config.loader import parse_config
from wayport.testing.fake_upstream import FakeUpstream, Fault

pytestmark = pytest.mark.anyio

COLLECTOR = "otlp-canary-V5mX8cQ2wLr7Tz4Kp9Hn"  #: the collector's credential, a canary too
ALL = (*CANARIES, COLLECTOR)


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[str] = []
        self.spans = 0
        self.got = asyncio.Event()

    async def traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        self.headers.append(request.headers.get("X-Collector-Token", ""))
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        self.spans += sum(len(s.spans) for r in message.resource_spans for s in r.scope_spans)
        self.got.set()
        return web.Response(body=b"", content_type="application/x-protobuf")


@asynccontextmanager
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", found.traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield found, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _no_canary(text: str, where: str) -> None:
    for canary in ALL:
        assert canary not in text, (where, canary)


async def test_no_canary_in_any_span(tmp_path: Path) -> None:
    async with FakeUpstream() as fake, receiver() as (got, endpoint):
        env = {**_env(tmp_path), "COLLECTOR_TOKEN": COLLECTOR}
        text = CONFIG % fake.openai_url + (
            "telemetry:\n"
            f"  otlp_endpoint: {endpoint}\n"
            '  otlp_headers: {X-Collector-Token: "${COLLECTOR_TOKEN}"}\n'
        )
        runtime = build(parse_config(text, env=env, base_dir=tmp_path, bind_check=False))
        assert runtime.tracing is not None
        quoted = f"Incorrect API key provided: {UPSTREAM}. Also tried {ADMIN}"
        fake.script(*[Fault.status(401, message=quoted)] * 50)
        good = {"Authorization": f"Bearer {ADMIN}"}
        chat = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
        try:
            async with serve(runtime.app) as url, httpx.AsyncClient(base_url=url) as client:
                r = await client.post("/v1/chat/completions", json=chat, headers=good)
                assert r.status_code >= 400
                await client.post(
                    "/v1/chat/completions", json={**chat, "stream": True}, headers=good
                )
                wrong = {"Authorization": f"Bearer x{ADMIN}", "X-Request-Id": WEBHOOK}
                assert (
                    await client.post("/v1/chat/completions", json=chat, headers=wrong)
                ).status_code == 401
                s = await client.post("/v1/sessions", json={"agent": "assistant"}, headers=good)
                assert s.status_code in (200, 201), s.text
                run = await client.post(
                    f"/v1/sessions/{s.json()['id']}/runs", json={"input": "hi"}, headers=good
                )
                assert "failed" in run.text
                # the console's in-memory traces: the list and every trace's spans
                listed = await client.get("/console/api/traces", headers=good)
                assert listed.status_code == 200, listed.text
                roots = listed.json()["data"]
                assert len(roots) >= 3
                seen = [listed.text]
                for root in roots:
                    one = await client.get(f"/console/api/traces/{root['trace_id']}", headers=good)
                    assert one.status_code == 200, one.text
                    seen.append(one.text)
            console = "\n".join(seen)
            _no_canary(console, "console traces")
            assert '"error.type":"BackendError"' in console  # the failures are on the spans
            assert await asyncio.to_thread(runtime.tracing.flush)
            await asyncio.wait_for(got.got.wait(), 10)
        finally:
            await asyncio.to_thread(runtime.tracing.shutdown)
    assert len(fake.requests) >= 3  # the upstream was really called and refused
    assert got.headers[0] == COLLECTOR  # the credential went where it belongs, only there
    assert got.spans >= 5
    exported = b"".join(got.bodies).decode("utf-8", "replace")
    _no_canary(exported, "OTLP export")
    assert "[REDACTED]" in exported
    assert json.dumps(roots)  # (the console answer was JSON throughout)
