"""Without an exporter the spans are Wayport's own light records: they nest across ``start``,
``span`` and ``start_detached``, continue a caller's ``traceparent`` (and propagate it on),
honour a caller's decision not to sample, put their ids on the log lines, redact error
messages, and reach the console's recent traces; a whole server shows a request's and a run's
trace on the console. With an exporter (or a ratio sampler) the SDK builds the spans again."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from tests.console.conftest import AUTH, config_text, served
from tests.server.helpers import captured_logs

from wayport.core.workflow_run import WorkflowRun, WorkflowStatus
from wayport.telemetry.logging import Redactor
from wayport.telemetry.tracing import Tracing, span_ids
from wayport.telemetry.workflows import WorkflowTracing

SECRET = "Zq8vN3kLm5Xp2Rt7Wy4Hs9Jd6Fg1Bc0A"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
ROUTE = "/v1/chat/completions"


def _by_name(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in spans}


def _injected() -> dict[str, str]:
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier


def test_spans_nest_across_start_span_and_start_detached() -> None:
    tracing = Tracing()
    assert tracing.light
    handle = tracing.server_span("POST", ROUTE, route=ROUTE)
    chat, token = tracing.start("chat m", {"gen_ai.request.model": "m"}, SpanKind.CLIENT)
    with tracing.span("execute_tool t", {"gen_ai.tool.name": "t"}) as tool:
        assert trace.get_current_span() is tool
    stream = tracing.start_detached("chat s", {"gen_ai.request.model": "s"}, SpanKind.CLIENT)
    assert trace.get_current_span() is chat  # detached: not made current
    step = otel_context.attach(trace.set_span_in_context(stream))
    trace.get_current_span().set_attributes({"wayport.deployment": "d"})
    otel_context.detach(step)
    stream.set_attributes({"gen_ai.usage.output_tokens": 7})
    stream.end()
    tracing.finish(chat, token)
    tracing.end_server_span(handle, route=ROUTE, status=200, tenant="t")

    spans = tracing.recent.trace(handle.trace_id, tenant="t")
    assert spans is not None
    found = _by_name(spans)
    assert [s["name"] for s in spans] == ["POST " + ROUTE, "chat m", "execute_tool t", "chat s"]
    server = found["POST " + ROUTE]
    assert server["parent_id"] is None and server["kind"] == "server"
    assert server["attributes"] == {
        "http.request.method": "POST",
        "url.path": ROUTE,
        "http.route": ROUTE,
        "http.response.status_code": 200,
        "wayport.tenant": "t",
    }
    assert found["chat m"]["parent_id"] == server["span_id"]
    assert found["chat m"]["kind"] == "client"
    assert found["execute_tool t"]["parent_id"] == found["chat m"]["span_id"]
    assert found["execute_tool t"]["kind"] == "internal"
    assert found["chat s"]["parent_id"] == found["chat m"]["span_id"]
    assert found["chat s"]["attributes"] == {
        "gen_ai.request.model": "s",
        "wayport.deployment": "d",
        "gen_ai.usage.output_tokens": 7,
    }
    assert {s["trace_id"] for s in spans} == {handle.trace_id}
    assert len({s["span_id"] for s in spans}) == 4
    assert all(s["status"] == "unset" and s["duration_ms"] >= 0 for s in spans)
    assert trace.get_current_span() is trace.INVALID_SPAN  # everything detached again


def test_a_callers_traceparent_is_continued_and_passed_on() -> None:
    tracing = Tracing()
    handle = tracing.server_span(
        "POST",
        ROUTE,
        route=ROUTE,
        traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01".encode(),
        tracestate=b"vendor=1",
    )
    chat, token = tracing.start("chat m", {}, SpanKind.CLIENT)
    outgoing = _injected()
    _, chat_id = span_ids(chat)
    tracing.finish(chat, token)
    tracing.end_server_span(handle, route=ROUTE, status=200, tenant="t")

    assert handle.trace_id == CALLER_TRACE
    assert outgoing == {"traceparent": f"00-{CALLER_TRACE}-{chat_id}-01", "tracestate": "vendor=1"}
    spans = tracing.recent.trace(CALLER_TRACE, tenant="t")
    assert spans is not None
    assert spans[0]["parent_id"] == CALLER_SPAN
    assert spans[1]["span_id"] == chat_id and spans[1]["parent_id"] == spans[0]["span_id"]


def test_a_caller_that_does_not_sample_gets_no_recorded_spans() -> None:
    tracing = Tracing()
    handle = tracing.server_span(
        "POST", ROUTE, route=ROUTE, traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-00".encode()
    )
    chat, token = tracing.start("chat m", {}, SpanKind.CLIENT)
    assert not handle.span.is_recording() and not chat.is_recording()
    outgoing = _injected()
    tracing.finish(chat, token)
    tracing.end_server_span(handle, route=ROUTE, status=200, tenant="t")
    assert handle.trace_id == CALLER_TRACE  # the ids still travel: the logs carry them
    assert outgoing["traceparent"].startswith(f"00-{CALLER_TRACE}-")
    assert outgoing["traceparent"].endswith("-00")
    assert tracing.recent.traces(tenant="t") == []


def test_log_lines_carry_the_ids_of_the_bound_span() -> None:
    tracing = Tracing()
    with captured_logs() as logs:
        log = structlog.get_logger("wayport.test")
        handle = tracing.server_span("GET", "/v1/models", route="/v1/models")
        log.info("inside")
        with tracing.span("invoke_agent a", {}, bind_logs=True) as run:
            log.info("in the run")
        tracing.end_server_span(handle, route="/v1/models", status=200, tenant="t")
        log.info("after")
    lines = {line["event"]: line for line in logs.lines()}
    server_ids = span_ids(handle.span)
    assert (lines["inside"]["trace_id"], lines["inside"]["span_id"]) == server_ids
    assert (lines["in the run"]["trace_id"], lines["in the run"]["span_id"]) == span_ids(run)
    assert span_ids(run)[0] == server_ids[0]
    assert "trace_id" not in lines["after"] and "span_id" not in lines["after"]


def test_failures_are_recorded_redacted_and_ended_spans_stay_as_they_ended() -> None:
    tracing = Tracing(redact=Redactor([SECRET]).scrub)
    handle = tracing.server_span("GET", f"/channels/hook/{SECRET}")
    with pytest.raises(RuntimeError), tracing.span("chat m", {}) as failed:
        raise RuntimeError(f"upstream said: bad key {SECRET}")
    tracing.end_server_span(handle, route="/channels/{name}/{path}", status=502, tenant="t")
    failed.set_attribute("late", True)  # ignored: the span has ended
    failed.set_status(Status(StatusCode.OK))
    failed.update_name("renamed")

    status = getattr(failed, "status")  # noqa: B009 - the light span's own field
    assert status.status_code is StatusCode.ERROR
    assert SECRET not in (status.description or "") and "[REDACTED]" in status.description
    spans = tracing.recent.trace(handle.trace_id, tenant="t")
    assert spans is not None
    server, chat = spans
    assert server["name"] == "GET /channels/{name}/{path}"
    assert SECRET not in server["attributes"]["url.path"]
    assert server["status"] == "error" and server["attributes"]["error.type"] == "502"
    assert chat["name"] == "chat m" and chat["status"] == "error"
    assert chat["attributes"] == {"error.type": "RuntimeError"}


def test_an_ok_status_is_final_as_in_the_sdk() -> None:
    tracing = Tracing()
    span = tracing.start_detached("s", {}, SpanKind.INTERNAL)
    span.set_status(StatusCode.UNSET)
    span.set_status(StatusCode.OK)
    span.set_status(StatusCode.ERROR, "too late")
    span.end()
    span.end()  # twice: kept once
    kept = list(tracing.recent._ended)
    assert len(kept) == 1 and kept[0].status.status_code is StatusCode.OK


def test_workflow_spans_are_light_traces_of_their_own() -> None:
    tracing = Tracing()
    observer = WorkflowTracing(tracing)
    run = WorkflowRun(
        id="run-1", tenant_id="t", workflow="flow", version="1", status=WorkflowStatus.RUNNING
    )
    handle = tracing.server_span("POST", "/v1/workflows", route="/v1/workflows")
    observer.step_started(run, "a", "tool", 1)  # inside a request: still a trace of its own
    observer.step_finished(run, "a", "tool", "completed", 0.01, None)
    observer.step_finished(run, "skipped", "tool", "skipped", 0.0, None)  # never started
    tracing.end_server_span(handle, route="/v1/workflows", status=200, tenant="t")
    observer.run_finished(replace(run, status=WorkflowStatus.FAILED, error="boom"))

    listed, request = sorted(
        tracing.recent.traces(tenant="t"), key=lambda t: t["name"], reverse=True
    )
    assert listed["name"] == "workflow flow" and listed["spans"] == 3
    assert listed["trace_id"] != request["trace_id"]
    spans = tracing.recent.trace(listed["trace_id"], tenant="t")
    assert spans is not None
    found = _by_name(spans)
    root = found["workflow flow"]
    assert root["parent_id"] is None and root["status"] == "error"
    assert root["attributes"]["wayport.workflow.status"] == "failed"
    assert found["workflow.step a"]["parent_id"] == root["span_id"]
    skipped = found["workflow.step skipped"]
    assert skipped["parent_id"] == root["span_id"] and skipped["duration_ms"] >= 0
    assert skipped["attributes"]["wayport.workflow.step.status"] == "skipped"


def _exported(tracing: Tracing) -> InMemorySpanExporter:
    memory = InMemorySpanExporter()
    tracing.provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


def test_light_roots_are_sampled_by_the_ratio_and_children_follow() -> None:
    none = Tracing(sample_ratio=0.0)
    assert none.light
    handle = none.server_span("POST", ROUTE, route=ROUTE)
    chat, token = none.start("chat m", {}, SpanKind.CLIENT)
    assert not handle.span.is_recording() and not chat.is_recording()
    assert _injected()["traceparent"].endswith("-00")
    none.finish(chat, token)
    none.end_server_span(handle, route=ROUTE, status=200, tenant="t")
    assert none.recent.traces(tenant="t") == []
    # a caller's decision wins over the ratio
    handle = none.server_span(
        "POST", ROUTE, route=ROUTE, traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01".encode()
    )
    none.end_server_span(handle, route=ROUTE, status=200, tenant="t")
    assert [t["trace_id"] for t in none.recent.traces(tenant="t")] == [CALLER_TRACE]

    half = Tracing(sample_ratio=0.5, keep_traces=1000)
    roots = [half.start_detached("r", {"wayport.tenant": "t"}) for _ in range(400)]
    for root in roots:
        root.end()
    kept = [r for r in roots if r.get_span_context().trace_flags.sampled]
    bound = 1 << 63  # the low 64 bits of a kept trace id are below half their range
    assert all(int(span_ids(r)[0], 16) & ((1 << 64) - 1) < bound for r in kept)
    assert 100 < len(kept) < 300  # about half of 400
    assert len(half.recent.traces(tenant="t", limit=200)) == min(len(kept), 200)


def test_an_exporter_brings_the_sdk_back() -> None:
    memory = InMemorySpanExporter()
    with_exporter = Tracing(exporter=memory)
    assert not with_exporter.light
    assert Tracing(sample_ratio=0.5).light and Tracing(keep_traces=0).light

    handle = with_exporter.server_span("POST", ROUTE, route=ROUTE)
    chat, token = with_exporter.start("chat m", {"gen_ai.request.model": "m"}, SpanKind.CLIENT)
    assert isinstance(chat, ReadableSpan)  # the SDK's own span
    with_exporter.finish(chat, token)
    with_exporter.end_server_span(handle, route=ROUTE, status=200, tenant="t")
    assert with_exporter.flush()
    exported = {s.name: s for s in memory.get_finished_spans()}
    assert set(exported) == {"POST " + ROUTE, "chat m"}
    server_ctx = exported["POST " + ROUTE].context
    assert server_ctx is not None and format(server_ctx.trace_id, "032x") == handle.trace_id
    parent = exported["chat m"].parent
    assert parent is not None and parent.span_id == server_ctx.span_id
    spans = with_exporter.recent.trace(handle.trace_id, tenant="t")  # the console too
    assert spans is not None and [s["name"] for s in spans] == ["POST " + ROUTE, "chat m"]
    with_exporter.shutdown()

    # A processor added later (a test's in-memory exporter) switches a light one over.
    tracing = Tracing()
    light_root = tracing.start_detached("root", {"wayport.tenant": "t"}, SpanKind.INTERNAL)
    later = _exported(tracing)
    assert not tracing.light
    child = tracing.start_detached(
        "child", {}, SpanKind.INTERNAL, context=trace.set_span_in_context(light_root)
    )
    child.end()
    light_root.end()
    (span,) = later.get_finished_spans()  # the light root is not the SDK's to export
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == span_ids(light_root)[1]
    kept = tracing.recent.trace(span_ids(light_root)[0], tenant="t")
    assert kept is not None and [s["name"] for s in kept] == ["root", "child"]
    tracing.shutdown()


@pytest.mark.anyio
async def test_the_console_shows_a_requests_and_a_runs_trace(tmp_path: Path) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with captured_logs() as logs:
        async with served(config_text(tmp_path)) as s:
            assert s.runtime.tracing is not None and s.runtime.tracing.light
            async with httpx.AsyncClient(base_url=s.url, headers=AUTH) as client:
                traceparent = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
                chat = await client.post(ROUTE, json=body, headers=traceparent)
                assert chat.status_code == 200
                streamed = await client.post(ROUTE, json={**body, "stream": True})
                assert streamed.status_code == 200 and "[DONE]" in streamed.text
                sid = (await client.post("/v1/sessions", json={"agent": "support"})).json()["id"]
                run = await client.post(f"/v1/sessions/{sid}/runs", json={"input": "a human"})
                assert run.json()["status"] == "completed"
                listed = (await client.get("/console/api/traces")).json()
                shown = (await client.get(f"/console/api/traces/{CALLER_TRACE}")).json()
                others = [
                    (await client.get(f"/console/api/traces/{t['trace_id']}")).json()["spans"]
                    for t in listed["data"]
                ]

    assert listed["tracing"] is True
    assert CALLER_TRACE in [t["trace_id"] for t in listed["data"]]
    server, llm = shown["spans"]
    assert server["name"] == "POST " + ROUTE and server["parent_id"] == CALLER_SPAN
    assert server["attributes"]["http.response.status_code"] == 200
    assert llm["name"] == "chat m" and llm["parent_id"] == server["span_id"]
    assert llm["attributes"]["gen_ai.response.model"] == "desk"  # named by TracedEvents
    assert llm["attributes"]["gen_ai.usage.output_tokens"] > 0

    stream = next(
        t for t in others if t[0]["name"] == "POST " + ROUTE and t[0]["trace_id"] != CALLER_TRACE
    )
    assert [s["name"] for s in stream] == ["POST " + ROUTE, "chat m"]
    assert stream[1]["parent_id"] == stream[0]["span_id"]
    assert stream[1]["attributes"]["gen_ai.response.model"] == "desk"
    assert stream[1]["attributes"]["gen_ai.response.finish_reasons"]

    agent_trace = next(t for t in others if any(s["name"] == "invoke_agent support" for s in t))
    found = _by_name(agent_trace)
    agent = found["invoke_agent support"]
    assert found["execute_tool escalate"]["parent_id"] == agent["span_id"]
    assert found["chat m"]["parent_id"] == agent["span_id"]
    assert agent["attributes"]["wayport.run.status"] == "completed"

    access = [
        line
        for line in logs.lines()
        if line.get("event") == "request" and line.get("path") == ROUTE
    ]
    assert access[0]["trace_id"] == CALLER_TRACE and access[0]["span_id"] == server["span_id"]
