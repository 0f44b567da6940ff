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

The request path pays for every span it starts, so spans are started with the SDK's plain
``start_span`` (no context-manager generators), their attributes given once as a dict when
they are known, and nothing is redacted that cannot hold user data (an exact route's path).
The recent traces keep a few fields of each span and turn them into plain data only when read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["RecentTraces", "ServerSpan", "Tracing", "span_ids"]

TENANT_ATTRIBUTE = "wayport.tenant"
_PROPAGATOR = TraceContextTextMapPropagator()
_KIND = {SpanKind.SERVER: "server", SpanKind.CLIENT: "client", SpanKind.INTERNAL: "internal"}
_ERROR = Status(StatusCode.ERROR)


def span_ids(span: Span) -> tuple[str, str]:
    """The span's trace id and span id in the usual hex form."""
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


class _Kept(NamedTuple):
    """What the console needs of a finished span: a few fields, not the SDK's whole object
    graph (kept spans are long-lived; fewer objects keep the garbage collector's work low)."""

    trace_id: int
    span_id: int
    parent_id: int | None
    name: str
    kind: SpanKind  #: turned into its name when read, not on the request path
    start: int
    end: int
    status: Status
    attributes: Mapping[str, Any]


#: Finished spans held, unread, per trace kept: beyond ``keep * SPANS_PER_TRACE`` the oldest
#: go unread (a trace of the last ``keep`` loses spans only if the traces after it average
#: more spans than this).
SPANS_PER_TRACE = 16


class RecentTraces(SpanProcessor):
    """Keeps the finished spans of the last ``keep`` traces, for the console.

    Ending a span only appends the SDK's finished span to a bounded queue (no lock, nothing
    built): the spans are sorted into traces when the console reads them, and turned into
    plain data then. Unread, the queue simply drops its oldest spans."""

    def __init__(self, keep: int = 200) -> None:
        self._keep = keep
        self._traces: OrderedDict[int, list[_Kept]] = OrderedDict()
        self._lock = threading.Lock()
        self._ended: deque[ReadableSpan] = deque(maxlen=max(1, keep) * SPANS_PER_TRACE)

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self._ended.append(span)

    def _sort(self) -> None:
        """Sort the spans ended since the last read into their traces (under the lock)."""
        ended = self._ended
        for _ in range(len(ended)):
            self._keep_span(ended.popleft())

    def _keep_span(self, span: ReadableSpan) -> None:
        ctx = span.context
        if ctx is None:
            return
        parent = span.parent
        trace_id = ctx.trace_id
        kept = _Kept(
            trace_id,
            ctx.span_id,
            parent.span_id if parent is not None else None,
            span.name,
            span.kind,
            span.start_time or 0,
            span.end_time or 0,
            span.status,
            span.attributes or _EMPTY,  # the SDK's attributes are frozen once the span has ended
        )
        traces = self._traces
        spans = traces.get(trace_id)
        if spans is None:
            traces[trace_id] = [kept]
            if len(traces) > self._keep:
                traces.popitem(last=False)
        else:
            spans.append(kept)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def trace(self, trace_id: str, *, tenant: str) -> list[dict[str, Any]] | None:
        """The trace's spans, oldest first; ``None`` when unknown here or another tenant's."""
        try:
            key = int(trace_id, 16)
        except ValueError:
            return None
        with self._lock:
            self._sort()
            spans = list(self._traces.get(key, ()))
        if not _belongs(spans, tenant):
            return None
        return [_plain(s) for s in sorted(spans, key=lambda s: s.start)]

    def traces(self, *, tenant: str, limit: int = 50) -> list[dict[str, Any]]:
        """The root spans of the tenant's latest traces, newest first."""
        with self._lock:
            self._sort()
            everything = [list(spans) for spans in reversed(self._traces.values())]
        found = []
        for spans in everything:
            if not _belongs(spans, tenant):
                continue
            ids = {s.span_id for s in spans}
            roots = [s for s in spans if s.parent_id not in ids]
            root = min(roots or spans, key=lambda s: s.start)
            found.append({**_plain(root), "spans": len(spans)})
            if len(found) >= limit:
                break
        return found


_EMPTY: Mapping[str, Any] = {}


def _belongs(spans: list[_Kept], tenant: str) -> bool:
    return any(s.attributes.get(TENANT_ATTRIBUTE) == tenant for s in spans)


def _plain(s: _Kept) -> dict[str, Any]:
    return {
        "trace_id": format(s.trace_id, "032x"),
        "span_id": format(s.span_id, "016x"),
        "parent_id": format(s.parent_id, "016x") if s.parent_id is not None else None,
        "name": s.name,
        "kind": _KIND.get(s.kind, "internal"),
        "start": s.start / 1e9,
        "duration_ms": round((s.end - s.start) / 1e6, 3),
        "status": s.status.status_code.name.lower(),
        "attributes": dict(s.attributes),
    }


@dataclass(slots=True)
class ServerSpan:
    """An HTTP server span in flight, attached to the request's context."""

    span: Span
    method: str
    trace_id: str
    _token: object
    _log_tokens: Mapping[str, Any]
    route: str | None = None  #: the route named when it started (``http.route``)


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
        self.provider = TracerProvider(resource=resource, sampler=ParentBased(root))
        self.recent = RecentTraces(keep_traces)
        if keep_traces > 0:
            self.provider.add_span_processor(self.recent)
        if exporter is not None:
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("wayport", version)
        self._redact = redact if redact is not None else _same
        self._names: dict[tuple[str, str], str] = {}

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
        span = self.tracer.start_span(name, parent, SpanKind.SERVER, attributes)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        trace_id, span_id = span_ids(span)
        log_tokens = structlog.contextvars.bind_contextvars(trace_id=trace_id, span_id=span_id)
        return ServerSpan(span, method, trace_id, token, log_tokens, route)

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
        structlog.contextvars.reset_contextvars(**handle._log_tokens)
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
        span = self.tracer.start_span(name, kind=kind, attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span))
        log_tokens: Mapping[str, Any] = {}
        if bind_logs:
            trace_id, span_id = span_ids(span)
            log_tokens = structlog.contextvars.bind_contextvars(trace_id=trace_id, span_id=span_id)
        try:
            yield span
        except BaseException as exc:
            self.fail(span, exc)
            raise
        finally:
            span.end()
            if log_tokens:
                structlog.contextvars.reset_contextvars(**log_tokens)
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
        span = self.tracer.start_span(name, None, kind, attributes)
        return span, otel_context.attach(trace.set_span_in_context(span))

    def finish(self, span: Span, token: object) -> None:
        span.end()
        otel_context.detach(token)  # type: ignore[arg-type]

    def fail(self, span: Span, exc: BaseException) -> None:
        span.set_attribute("error.type", type(exc).__name__)
        span.set_status(Status(StatusCode.ERROR, self._redact(str(exc))[:500]))

    def start_detached(self, name: str, attributes: Mapping[str, Any], kind: SpanKind) -> Span:
        """A child of the current span that is not made current (for generators, which
        attach its context around each step themselves)."""
        return self.tracer.start_span(name, kind=kind, attributes=attributes)


def _same(text: str) -> str:
    return text
