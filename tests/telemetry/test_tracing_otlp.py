"""Traces leave over OTLP/HTTP: a local receiver decodes the real protobuf
``ExportTraceServiceRequest`` the exporter posts, and finds the GenAI spans, their nesting, a
caller's ``traceparent`` continued, and the trace id on the JSON log lines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from tests.console.conftest import AUTH, config_text, runtime_for, served
from tests.server.helpers import captured_logs

pytestmark = pytest.mark.anyio


class Receiver:
    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.resources: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self.got = asyncio.Event()

    async def traces(self, request: web.Request) -> web.Response:
        self.content_types.append(request.content_type)
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        for resource_spans in message.resource_spans:
            self.resources.append(_attributes(resource_spans.resource.attributes))
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        {
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_id": span.parent_span_id.hex() or None,
                            "kind": span.kind,
                            "attributes": _attributes(span.attributes),
                        }
                    )
        self.got.set()
        return web.Response(body=b"", content_type="application/x-protobuf")


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def _attributes(items: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


@asynccontextmanager
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", found.traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield found, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_spans_are_exported_over_otlp_with_gen_ai_attributes(tmp_path: Path) -> None:
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    caller_span = "00f067aa0ba902b7"
    async with receiver() as (got, endpoint):
        extra = f"telemetry:\n  otlp_endpoint: {endpoint}\n  service_name: wayport-test\n"
        with captured_logs() as logs:
            async with served(config_text(tmp_path, extra=extra)) as s:
                async with httpx.AsyncClient(base_url=s.url, headers=AUTH) as client:
                    chat = await client.post(
                        "/v1/chat/completions",
                        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                        headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"},
                    )
                    assert chat.status_code == 200
                    sid = (await client.post("/v1/sessions", json={"agent": "support"})).json()
                    run = await client.post(
                        f"/v1/sessions/{sid['id']}/runs", json={"input": "a human please"}
                    )
                    assert run.json()["status"] == "completed"
                assert s.runtime.tracing is not None
                assert await asyncio.to_thread(s.runtime.tracing.flush)
                await asyncio.wait_for(got.got.wait(), 10)
        # (the served() exit shut the provider down, which exported anything left)

    assert got.content_types[0] == "application/x-protobuf"
    assert got.resources[0]["service.name"] == "wayport-test"
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in got.spans:
        by_name.setdefault(span["name"], []).append(span)

    # The chat request continued the caller's trace.
    server = by_name["POST /v1/chat/completions"][0]
    assert server["trace_id"] == caller_trace
    assert server["parent_id"] == caller_span
    assert server["attributes"]["http.response.status_code"] == 200
    assert server["attributes"]["http.route"] == "/v1/chat/completions"
    llm = next(sp for sp in by_name["chat m"] if sp["trace_id"] == caller_trace)
    assert llm["parent_id"] == server["span_id"]
    attrs = llm["attributes"]
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "m"
    assert attrs["gen_ai.response.model"] == "desk"
    assert attrs["gen_ai.provider.name"] == "helpdesk"
    assert attrs["gen_ai.usage.input_tokens"] > 0
    assert attrs["gen_ai.usage.output_tokens"] > 0

    agent = by_name["invoke_agent support"][0]
    assert agent["attributes"]["gen_ai.operation.name"] == "invoke_agent"
    assert agent["attributes"]["gen_ai.agent.name"] == "support"
    assert agent["attributes"]["gen_ai.agent.id"] == "support"
    assert agent["attributes"]["wayport.run.status"] == "completed"
    tool = by_name["execute_tool escalate"][0]
    assert tool["parent_id"] == agent["span_id"]
    assert tool["attributes"]["gen_ai.tool.name"] == "escalate"
    assert tool["attributes"]["gen_ai.tool.call.id"] == "call-esc"
    assert {sp["parent_id"] for sp in by_name["chat m"] if sp["trace_id"] == agent["trace_id"]} == {
        agent["span_id"]
    }

    # JSON log lines carry the trace: the access line of the chat request names it.
    access = [
        line
        for line in logs.lines()
        if line.get("event") == "request" and line.get("path") == "/v1/chat/completions"
    ]
    assert access and access[0]["trace_id"] == caller_trace
    assert len(str(access[0]["span_id"])) == 16


async def test_traces_off_wraps_nothing(tmp_path: Path) -> None:
    runtime = runtime_for(config_text(tmp_path, extra="telemetry:\n  traces: false\n"))
    assert runtime.tracing is None
    assert type(runtime.gateway._router).__name__ == "Router"  # no TracedRouter around it
    off = config_text(tmp_path, extra="telemetry:\n  traces: false\n")
    async with served(off) as s, httpx.AsyncClient(base_url=s.url, headers=AUTH) as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
        recent = (await client.get("/console/api/requests")).json()["data"]
        traces = (await client.get("/console/api/traces")).json()
    assert recent[0]["trace_id"] is None
    assert recent[0]["tokens_out"] > 0
    assert traces == {"data": [], "tracing": False}


def test_error_messages_on_spans_are_redacted() -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from wayport.telemetry.logging import Redactor
    from wayport.telemetry.tracing import Tracing

    secret = "Zq8vN3kLm5Xp2Rt7Wy4Hs9Jd6Fg1Bc0A"
    tracing = Tracing(redact=Redactor([secret]).scrub)
    exported = InMemorySpanExporter()
    tracing.provider.add_span_processor(SimpleSpanProcessor(exported))
    with pytest.raises(RuntimeError), tracing.span("chat m", {"wayport.tenant": "t"}):
        raise RuntimeError(f"upstream said: bad key {secret}")
    (span,) = exported.get_finished_spans()
    assert secret not in (span.status.description or "")
    assert "[REDACTED]" in (span.status.description or "")
    assert span.attributes is not None and span.attributes["error.type"] == "RuntimeError"
    assert tracing.recent.trace(format(span.context.trace_id, "032x"), tenant="other") is None
    tracing.shutdown()
