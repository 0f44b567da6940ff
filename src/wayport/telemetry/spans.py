"""The spans the console reads: ``LightSpan`` (a recording span of Wayport's own, used when no
exporter wants the OpenTelemetry SDK's) and ``RecentTraces`` (the finished spans of the last
traces, kept as ``Kept`` records). ``wayport.telemetry.tracing`` decides which span to build."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from random import getrandbits
from typing import Any, NamedTuple

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import (
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util import types

__all__ = ["SPANS_PER_TRACE", "TENANT_ATTRIBUTE", "Kept", "LightSpan", "RecentTraces"]

TENANT_ATTRIBUTE = "wayport.tenant"
_KIND = {SpanKind.SERVER: "server", SpanKind.CLIENT: "client", SpanKind.INTERNAL: "internal"}
_UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class Kept(NamedTuple):
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


class LightSpan(Span):
    """A recording span of Wayport's own, for when no exporter wants the SDK's (see the
    module's docstring). Changes after ``end()`` are ignored, as the SDK ignores them."""

    __slots__ = (
        "_context",
        "_ended",
        "_keep",
        "attributes",
        "kind",
        "name",
        "parent_id",
        "span_id",
        "start",
        "status",
        "trace_id",
        "trace_state",
    )

    def __init__(
        self,
        name: str,
        kind: SpanKind,
        attributes: Mapping[str, Any] | None,
        trace_id: int,
        parent_id: int | None,
        trace_state: TraceState | None,
        keep: Callable[[Kept], None] | None,
        start: int | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.attributes: dict[str, Any] = dict(attributes) if attributes else {}
        self.trace_id = trace_id
        self.span_id = getrandbits(64) or 1  # 0 is the invalid id
        self.parent_id = parent_id
        self.trace_state = trace_state
        self.status = _UNSET
        self.start = start if start is not None else time.time_ns()
        self._keep = keep
        self._ended = False
        self._context: SpanContext | None = None

    def get_span_context(self) -> SpanContext:
        ctx = self._context
        if ctx is None:
            ctx = self._context = SpanContext(
                self.trace_id, self.span_id, False, _SAMPLED, self.trace_state
            )
        return ctx

    def end(self, end_time: int | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        keep = self._keep
        if keep is not None:
            end = end_time if end_time is not None else time.time_ns()
            keep(
                Kept(
                    self.trace_id,
                    self.span_id,
                    self.parent_id,
                    self.name,
                    self.kind,
                    self.start,
                    end,
                    self.status,
                    self.attributes,
                )
            )

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        if not self._ended:
            self.attributes.update(attributes)

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if not self._ended:
            self.attributes[key] = value

    def update_name(self, name: str) -> None:
        if not self._ended:
            self.name = name

    def is_recording(self) -> bool:
        return not self._ended

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """As the SDK: OK is final, UNSET is ignored."""
        if self._ended or self.status.status_code is StatusCode.OK:
            return
        if not isinstance(status, Status):
            status = Status(status, description)
        if status.status_code is not StatusCode.UNSET:
            self.status = status

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        pass  # only an exporter would carry it: the console shows no events

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        pass

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        pass  # ``Tracing.fail`` records what the console shows: the type and the status


#: Finished spans held, unread, per trace kept: beyond ``keep * SPANS_PER_TRACE`` the oldest
#: go unread (a trace of the last ``keep`` loses spans only if the traces after it average
#: more spans than this).
SPANS_PER_TRACE = 16


class RecentTraces(SpanProcessor):
    """Keeps the finished spans of the last ``keep`` traces, for the console.

    Ending a span only appends its ``Kept`` record to a bounded queue (no lock): a light
    span appends itself, an SDK span through ``on_end``. The spans are sorted into traces
    when the console reads them, and turned into plain data then. Unread, the queue simply
    drops its oldest spans."""

    def __init__(self, keep: int = 200) -> None:
        self._keep = keep
        self._traces: OrderedDict[int, list[Kept]] = OrderedDict()
        self._lock = threading.Lock()
        self._ended: deque[Kept] = deque(maxlen=max(1, keep) * SPANS_PER_TRACE)
        #: where a light span puts itself when it ends (``None``: nothing is kept)
        self.add: Callable[[Kept], None] | None = self._ended.append if keep > 0 else None

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        ctx = span.context
        if ctx is None:
            return
        parent = span.parent
        self._ended.append(
            Kept(
                ctx.trace_id,
                ctx.span_id,
                parent.span_id if parent is not None else None,
                span.name,
                span.kind,
                span.start_time or 0,
                span.end_time or 0,
                span.status,
                span.attributes or _EMPTY,  # frozen once the span has ended
            )
        )

    def _sort(self) -> None:
        """Sort the spans ended since the last read into their traces (under the lock)."""
        ended = self._ended
        for _ in range(len(ended)):
            self._keep_span(ended.popleft())

    def _keep_span(self, kept: Kept) -> None:
        trace_id = kept.trace_id
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


def _belongs(spans: list[Kept], tenant: str) -> bool:
    return any(s.attributes.get(TENANT_ATTRIBUTE) == tenant for s in spans)


def _plain(s: Kept) -> dict[str, Any]:
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
