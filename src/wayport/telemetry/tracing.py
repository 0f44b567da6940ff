"""Traces with OpenTelemetry, following the GenAI semantic conventions (``gen_ai.*``).

One ``Tracing`` owns a tracer provider of its own (never the global one, so two runtimes and
the tests live side by side). It keeps the last traces in memory for the console and exports
them over OTLP/HTTP when an endpoint is given::

    tracing = Tracing.create(service_name="wayport", version="0.1.0",
                             otlp_endpoint="http://127.0.0.1:4318")
    router = TracedRouter(router, tracing)       # a ``chat {model}`` span per model call
    handle = tracing.server_span("POST", "/v1/chat/completions", route="/v1/chat/completions",
                                 traceparent=headers.get(b"traceparent"))
    ...
    tracing.end_server_span(handle, route="/v1/chat/completions", status=200, tenant="default")
    tracing.recent.trace(trace_id, tenant="default")   # the spans, for the console
    tracing.shutdown()                                 # flushes the exporter

Spans: the HTTP server span (channel ingress, W3C ``traceparent`` honoured), ``invoke_agent
{agent}`` (``wayport.telemetry.runs``), ``chat {model}`` and ``execute_tool {tool}``. While a
span is current its ids are bound to the log context, so JSON log lines carry ``trace_id`` and
``span_id``. Error messages recorded on spans pass the log ``Redactor`` first. Without a
``Tracing`` nothing of this runs: the app and the router are not wrapped at all.

Two ways to build a span, one API. Without an exporter (no OTLP endpoint: the common case),
a span is a ``LightSpan`` of our own (``wayport.telemetry.spans``): a
slotted ``opentelemetry.trace.Span`` (so ``set_span_in_context``, ``get_current_span`` and the
W3C propagator take it as any other), its ids from ``random.getrandbits``, its attributes a
plain dict, and ``end()`` hands it straight to ``RecentTraces``. No sampler, id generator,
attribute checks, lock or processor chain run: a request's server and ``chat`` spans, made
current and on the log lines, cost about 11 µs of CPU instead of about 70 through the SDK
(``docs/benchmarks.md``). A caller's ``traceparent`` marked not sampled still gets
non-recording spans, as the SDK's parent-based sampler would give, and with ``sample_ratio``
below 1.0 a new trace is kept by the SDK's ``TraceIdRatioBased`` rule (the trace id's low 64
bits against the ratio's bound). The SDK builds the spans only when something needs them: an
exporter (``otlp_endpoint``) or any other span processor added to ``provider`` (the tests'
in-memory exporters; from then on). Light spans keep no events, links or exceptions: only an
exporter would carry those, and the console shows none.

The request path pays for every span it starts, so spans are started without context-manager
generators, their attributes given once as a dict when they are known, the log ids bound
through structlog's own context variables, and nothing is redacted that cannot hold user data
(an exact route's path). The recent traces keep a few fields of each span (``Kept``) and
turn them into plain data only when read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from random import getrandbits
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from wayport.telemetry.spans import TENANT_ATTRIBUTE, LightSpan, RecentTraces

__all__ = ["TENANT_ATTRIBUTE", "RecentTraces", "ServerSpan", "Tracing", "span_ids"]

_PROPAGATOR = TraceContextTextMapPropagator()
_ERROR = Status(StatusCode.ERROR)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_LOW_64 = (1 << 64) - 1


def _log_vars() -> tuple[ContextVar[Any], ContextVar[Any]]:
    """structlog's own context variables for ``trace_id`` and ``span_id`` (what
    ``bind_contextvars`` sets), so that binding them costs two ``ContextVar.set``."""
    tokens = structlog.contextvars.bind_contextvars(trace_id=..., span_id=...)
    structlog.contextvars.reset_contextvars(**tokens)
    return tokens["trace_id"].var, tokens["span_id"].var


_LOG_TRACE_ID, _LOG_SPAN_ID = _log_vars()
_LogTokens = tuple[Token[Any], Token[Any]]


def _bind_logs(trace_id: str, span_id: str) -> _LogTokens:
    return _LOG_TRACE_ID.set(trace_id), _LOG_SPAN_ID.set(span_id)


def _unbind_logs(tokens: _LogTokens) -> None:
    _LOG_SPAN_ID.reset(tokens[1])
    _LOG_TRACE_ID.reset(tokens[0])


def span_ids(span: Span) -> tuple[str, str]:
    """The span's trace id and span id in the usual hex form."""
    if type(span) is LightSpan:
        return format(span.trace_id, "032x"), format(span.span_id, "016x")
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


@dataclass(slots=True)
class ServerSpan:
    """An HTTP server span in flight, attached to the request's context."""

    span: Span
    method: str
    trace_id: str
    _token: object
    _log_tokens: _LogTokens
    route: str | None = None  #: the route named when it started (``http.route``)


class _Provider(TracerProvider):
    """The SDK's provider; ``sdk`` turns true once a span processor other than the recent
    traces joins it (an exporter): from then on the SDK builds the spans."""

    sdk = False

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        if not isinstance(span_processor, RecentTraces):
            self.sdk = True


class Tracing:
    """The tracer provider, its in-memory recent traces and (optionally) an exporter."""

    def __init__(
        self,
        *,
        service_name: str = "wayport",
        version: str = "",
        exporter: SpanExporter | None = None,
        sample_ratio: float = 1.0,
        keep_traces: int = 200,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        """``keep_traces`` 0: no recent traces are kept (nobody reads them: no console)."""
        resource = Resource.create({"service.name": service_name, "service.version": version})
        # Every trace kept: ALWAYS_ON decides without hashing the trace id.
        root: Sampler = ALWAYS_ON if sample_ratio >= 1.0 else TraceIdRatioBased(sample_ratio)
        self.provider = _Provider(resource=resource, sampler=ParentBased(root))
        #: light roots are kept when the trace id's low 64 bits fall below this (the SDK's
        #: ``TraceIdRatioBased`` rule, so both agree on which traces are kept)
        self._bound = TraceIdRatioBased.get_bound_for_rate(min(max(sample_ratio, 0.0), 1.0))
        self.recent = RecentTraces(keep_traces)
        if keep_traces > 0:
            self.provider.add_span_processor(self.recent)
        if exporter is not None:
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("wayport", version)
        self._redact = redact if redact is not None else _same
        self._names: dict[tuple[str, str], str] = {}

    @property
    def light(self) -> bool:
        """Whether spans are built light (``LightSpan``) rather than by the SDK."""
        return not self.provider.sdk

    @classmethod
    def create(
        cls,
        *,
        service_name: str = "wayport",
        version: str = "",
        otlp_endpoint: str | None = None,
        otlp_headers: Mapping[str, str] | None = None,
        sample_ratio: float = 1.0,
        redact: Callable[[str], str] | None = None,
        keep_traces: int = 200,
    ) -> Tracing:
        """With ``otlp_endpoint``, spans are batched and posted to ``<endpoint>/v1/traces``."""
        exporter: SpanExporter | None = None
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(
                endpoint=otlp_endpoint.rstrip("/") + "/v1/traces",
                headers=dict(otlp_headers or {}),
            )
        return cls(
            service_name=service_name,
            version=version,
            exporter=exporter,
            sample_ratio=sample_ratio,
            redact=redact,
            keep_traces=keep_traces,
        )

    def redact(self, text: str) -> str:
        return self._redact(text)

    def flush(self) -> bool:
        return self.provider.force_flush()

    def shutdown(self) -> None:
        self.provider.shutdown()

    # ----------------------------------------------------------------- HTTP ingress

    def server_span(
        self,
        method: str,
        path: str,
        *,
        route: str | None = None,
        traceparent: bytes | None = None,
        tracestate: bytes | None = None,
    ) -> ServerSpan:
        """Start the request's span (continuing a caller's ``traceparent``) and make it
        current; ``end_server_span`` must follow in the same task. ``route``: the path's
        route when it is known already (an exact route: its path holds no user data, so it
        is not redacted); otherwise the path is redacted and the route named at the end."""
        parent = None
        if traceparent is not None:
            carrier = {"traceparent": traceparent.decode("latin-1")}
            if tracestate is not None:
                carrier["tracestate"] = tracestate.decode("latin-1")
            parent = _PROPAGATOR.extract(carrier)
        if route is None:
            name = method
            attributes = {"http.request.method": method, "url.path": self._redact(path)}
        else:
            name = self._name(method, route)
            attributes = {"http.request.method": method, "url.path": path, "http.route": route}
        span = self._start(name, attributes, SpanKind.SERVER, parent)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        trace_id, span_id = span_ids(span)
        return ServerSpan(span, method, trace_id, token, _bind_logs(trace_id, span_id), route)

    def end_server_span(self, handle: ServerSpan, *, route: str, status: int, tenant: str) -> None:
        span = handle.span
        if route == handle.route:
            attributes: dict[str, Any] = {
                "http.response.status_code": status,
                TENANT_ATTRIBUTE: tenant,
            }
        else:
            span.update_name(self._name(handle.method, route))
            attributes = {
                "http.route": route,
                "http.response.status_code": status,
                TENANT_ATTRIBUTE: tenant,
            }
        if status >= 500:
            attributes["error.type"] = str(status)
            span.set_status(_ERROR)
        span.set_attributes(attributes)
        span.end()
        _unbind_logs(handle._log_tokens)
        otel_context.detach(handle._token)  # type: ignore[arg-type]

    def _name(self, method: str, route: str) -> str:
        """``POST /v1/chat/completions``, made once per route and method (a bounded set:
        route templates, never raw paths)."""
        key = (method, route)
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = f"{method} {route}"
        return name

    # ----------------------------------------------------------------- internal spans

    def _start(
        self,
        name: str,
        attributes: Mapping[str, Any] | None,
        kind: SpanKind,
        context: Context | None = None,
        start_time: int | None = None,
    ) -> Span:
        """A child of ``context``'s span (the current one by default), not made current."""
        if self.provider.sdk:
            return self.tracer.start_span(name, context, kind, attributes, start_time=start_time)
        parent = trace.get_current_span(context)
        if type(parent) is LightSpan:
            trace_id, parent_id, state = parent.trace_id, parent.span_id, parent.trace_state
        else:
            ctx = parent.get_span_context()
            if not ctx.is_valid:  # a root
                trace_id, parent_id, state = getrandbits(128) or 1, None, None
                if trace_id & _LOW_64 >= self._bound:  # sampled out
                    span_id = getrandbits(64) or 1
                    return NonRecordingSpan(SpanContext(trace_id, span_id, False, _NOT_SAMPLED))
            elif ctx.trace_flags.sampled:
                trace_id, parent_id, state = ctx.trace_id, ctx.span_id, ctx.trace_state
            else:  # the caller (or an SDK span) decided against this trace
                span_id = getrandbits(64) or 1
                flags, state = ctx.trace_flags, ctx.trace_state
                return NonRecordingSpan(SpanContext(ctx.trace_id, span_id, False, flags, state))
        return LightSpan(
            name, kind, attributes, trace_id, parent_id, state, self.recent.add, start_time
        )

    @contextmanager
    def span(
        self,
        name: str,
        attributes: Mapping[str, Any],
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        bind_logs: bool = False,
    ) -> Iterator[Span]:
        """A child of the current span, current itself while inside; an exception escaping
        it is recorded (its message redacted) and marks the span as failed. ``bind_logs``
        puts its ids on the log lines written inside (the run loop's, which may run outside
        any request); otherwise lines carry the ids of the request's span."""
        span = self._start(name, attributes, kind)
        token = otel_context.attach(trace.set_span_in_context(span))
        log_tokens = _bind_logs(*span_ids(span)) if bind_logs else None
        try:
            yield span
        except BaseException as exc:
            self.fail(span, exc)
            raise
        finally:
            span.end()
            if log_tokens is not None:
                _unbind_logs(log_tokens)
            otel_context.detach(token)

    def start(
        self, name: str, attributes: Mapping[str, Any], kind: SpanKind = SpanKind.INTERNAL
    ) -> tuple[Span, object]:
        """``span`` without the context-manager generator (the request path's spans): a
        child of the current span, made current; ``finish`` must follow in the same task::

            span, token = tracing.start("chat m", {"gen_ai.request.model": "m"})
            try:
                ...
            except BaseException as exc:
                tracing.fail(span, exc)
                raise
            finally:
                tracing.finish(span, token)
        """
        span = self._start(name, attributes, kind)
        return span, otel_context.attach(trace.set_span_in_context(span))

    def finish(self, span: Span, token: object) -> None:
        span.end()
        otel_context.detach(token)  # type: ignore[arg-type]

    def fail(self, span: Span, exc: BaseException) -> None:
        span.set_attribute("error.type", type(exc).__name__)
        span.set_status(Status(StatusCode.ERROR, self._redact(str(exc))[:500]))

    def start_detached(
        self,
        name: str,
        attributes: Mapping[str, Any],
        kind: SpanKind = SpanKind.INTERNAL,
        *,
        context: Context | None = None,
        start_time: int | None = None,
    ) -> Span:
        """A child of the current span (or of ``context``'s) that is not made current (for
        generators, which attach its context around each step themselves, and for spans
        that outlive the task, as a workflow's). ``start_time``: nanoseconds since the epoch."""
        return self._start(name, attributes, kind, context, start_time)


def _same(text: str) -> str:
    return text
