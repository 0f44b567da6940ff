"""The request path's tracing shortcuts keep what they shortcut: an exact route's span is named
at once and its path left as it is, any other path is redacted and named at the end; the
recent traces, sorted only when read, still hold the last ``keep`` traces per tenant; with
nobody to read them (no console) none are kept; and a request that reserved nothing settles
without waiting on the limiter."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from wayport.core.limits import Limits
from wayport.core.pricing import Price, PriceTable
from wayport.core.types import Usage
from wayport.runtime.limiter import LocalLimiter
from wayport.server.auth import BOOTSTRAP_OWNER
from wayport.service.limits import LimitPolicy, LimitsService
from wayport.telemetry.logging import Redactor
from wayport.telemetry.spans import SPANS_PER_TRACE
from wayport.telemetry.tracing import Tracing

SECRET = "Zq8vN3kLm5Xp2Rt7Wy4Hs9Jd6Fg1Bc0A"


def _tracing(keep: int = 200, *, sdk: bool = True) -> tuple[Tracing, InMemorySpanExporter]:
    """``sdk``: with an in-memory exporter, so the SDK builds the spans; else light ones."""
    tracing = Tracing(redact=Redactor([SECRET]).scrub, keep_traces=keep)
    exported = InMemorySpanExporter()
    if sdk:
        tracing.provider.add_span_processor(SimpleSpanProcessor(exported))
    assert tracing.light is not sdk
    return tracing, exported


def _request(tracing: Tracing, tenant: str, *, children: int = 1) -> str:
    handle = tracing.server_span("POST", "/v1/chat/completions", route="/v1/chat/completions")
    for _ in range(children):
        span, token = tracing.start("chat m", {"gen_ai.request.model": "m"}, SpanKind.CLIENT)
        tracing.finish(span, token)
    tracing.end_server_span(handle, route="/v1/chat/completions", status=200, tenant=tenant)
    return handle.trace_id


def test_an_exact_route_is_named_at_once_and_its_path_kept() -> None:
    tracing, exported = _tracing()
    _request(tracing, "t")
    child, server = exported.get_finished_spans()
    assert server.name == "POST /v1/chat/completions"
    assert server.kind is SpanKind.SERVER
    assert dict(server.attributes or {}) == {
        "http.request.method": "POST",
        "url.path": "/v1/chat/completions",
        "http.route": "/v1/chat/completions",
        "http.response.status_code": 200,
        "wayport.tenant": "t",
    }
    assert child.parent is not None and child.parent.span_id == server.context.span_id
    tracing.shutdown()


def test_any_other_path_is_redacted_and_named_by_its_route_at_the_end() -> None:
    tracing, exported = _tracing()
    handle = tracing.server_span("GET", f"/channels/hook/{SECRET}", traceparent=None)
    tracing.end_server_span(handle, route="/channels/{name}/{path}", status=502, tenant="t")
    (span,) = exported.get_finished_spans()
    attributes: dict[str, Any] = dict(span.attributes or {})
    assert span.name == "GET /channels/{name}/{path}"
    assert SECRET not in attributes["url.path"]
    assert attributes["http.route"] == "/channels/{name}/{path}"
    assert attributes["error.type"] == "502"
    assert span.status.status_code.name == "ERROR"
    tracing.shutdown()


def test_a_callers_traceparent_is_continued() -> None:
    tracing, exported = _tracing()
    caller = "4bf92f3577b34da6a3ce929d0e0e4736"
    handle = tracing.server_span(
        "POST",
        "/v1/chat/completions",
        route="/v1/chat/completions",
        traceparent=f"00-{caller}-00f067aa0ba902b7-01".encode(),
        tracestate=b"vendor=1",
    )
    tracing.end_server_span(handle, route="/v1/chat/completions", status=200, tenant="t")
    (span,) = exported.get_finished_spans()
    assert handle.trace_id == caller
    assert span.parent is not None and format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert span.context.trace_state.get("vendor") == "1"
    tracing.shutdown()


@pytest.mark.parametrize("sdk", [False, True], ids=["light", "sdk"])
def test_recent_traces_keep_the_last_ones_sorted_when_read(sdk: bool) -> None:
    tracing, _ = _tracing(keep=3, sdk=sdk)
    ids = [_request(tracing, "a" if i % 2 == 0 else "b", children=2) for i in range(5)]
    listed = tracing.recent.traces(tenant="a")
    # five traces ended, three kept: a's newest two (ids[4], ids[2]); ids[0] was dropped
    assert [t["trace_id"] for t in listed] == [ids[4], ids[2]]
    assert all(t["spans"] == 3 and t["kind"] == "server" for t in listed)
    assert listed[0]["name"] == "POST /v1/chat/completions"
    assert listed[0]["status"] == "unset"
    spans = tracing.recent.trace(ids[4], tenant="a")
    assert spans is not None and [s["name"] for s in spans] == [
        "POST /v1/chat/completions",
        "chat m",
        "chat m",
    ]
    assert tracing.recent.trace(ids[4], tenant="b") is None  # another tenant's
    assert tracing.recent.trace(ids[0], tenant="a") is None  # dropped
    # read again, and after more traffic: nothing read twice, nothing lost
    assert [t["trace_id"] for t in tracing.recent.traces(tenant="b")] == [ids[3]]
    later = _request(tracing, "b")
    assert [t["trace_id"] for t in tracing.recent.traces(tenant="b")] == [later, ids[3]]
    tracing.shutdown()


@pytest.mark.parametrize("sdk", [False, True], ids=["light", "sdk"])
def test_unread_spans_are_bounded(sdk: bool) -> None:
    tracing, _ = _tracing(keep=2, sdk=sdk)
    for _ in range(50):
        _request(tracing, "a", children=3)
    assert len(tracing.recent._ended) == 2 * SPANS_PER_TRACE
    assert len(tracing.recent.traces(tenant="a")) == 2
    tracing.shutdown()


@pytest.mark.parametrize("sdk", [False, True], ids=["light", "sdk"])
def test_without_a_reader_no_traces_are_kept(sdk: bool) -> None:
    tracing, exported = _tracing(keep=0, sdk=sdk)
    trace_id = _request(tracing, "a")
    assert len(exported.get_finished_spans()) == (2 if sdk else 0)  # exported only with the SDK
    assert len(tracing.recent._ended) == 0
    assert tracing.recent.traces(tenant="a") == []
    assert tracing.recent.trace(trace_id, tenant="a") is None
    tracing.shutdown()


@pytest.mark.anyio
async def test_a_request_that_reserved_nothing_settles_without_the_limiter() -> None:
    prices = PriceTable({"m": Price(input=1.0, output=2.0)})
    free = LimitsService(prices=prices, limiter=LocalLimiter())
    held = await free.admit(BOOTSTRAP_OWNER, model="m", max_tokens=10, prompt_chars=40)
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)
    assert free.settle_unreserved(held, usage) == pytest.approx(3.0)
    assert free.settle_unreserved(held, usage) == 0.0  # settled once only
    assert await free.settle(held, usage) == 0.0

    limited = LimitsService(
        policy=LimitPolicy({"tenant": {"*": Limits(rpm=10)}}),
        prices=prices,
        limiter=LocalLimiter(),
    )
    held = await limited.admit(BOOTSTRAP_OWNER, model="m", max_tokens=10, prompt_chars=40)
    assert held.charges
    assert limited.settle_unreserved(held, usage) is None  # the limiter must give back
    assert await limited.settle(held, usage) == pytest.approx(3.0)
