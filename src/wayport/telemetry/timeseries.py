"""Per-minute aggregates kept in memory, for the console's charts and its list of recent
requests. Fed by the same hooks as the Prometheus metrics; nothing here does I/O.

    series = Timeseries(minutes=1440)
    record = series.begin()             # the HTTP server, at the start of a request
    series.tokens("smollm2", 12, 30)    # the gateway: counted on the request in context
    series.end(record, tenant="default", request_id="req-1", method="POST",
               route="/v1/chat/completions", model="smollm2", status=200, seconds=0.2)
    series.points("default", minutes=60)   # [{"t": 1735689600, "requests": 1, …}, …]
    series.recent("default")               # newest first, with tokens and the trace id

Everything is kept per tenant, so a console signed in for one tenant never sees another's.
A request's tokens reach it through a context variable: the gateway reports tokens in the
request's own task, and agent runs set the run's tenant for their model calls.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Upper bounds (seconds) of the latency buckets one minute keeps, for its p95.
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(slots=True)
class RequestRecord:
    """One request in flight; the gateway adds its tokens as they are counted."""

    began: float
    tokens_in: int = 0
    tokens_out: int = 0
    trace_id: str | None = None
    charged_in: int = 0  #: of the tokens, those an agent run has charged to a minute already
    charged_out: int = 0


@dataclass(slots=True)
class _Minute:
    t: int  #: the minute's start, seconds since the epoch
    requests: int = 0
    errors: int = 0  #: answers with status >= 500 (a client's own mistake is not an error)
    client_errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    runs_completed: int = 0
    runs_failed: int = 0
    escalations: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS) + 1))

    def p95(self) -> float | None:
        return _quantile(self.latency, 0.95)

    def point(self) -> dict[str, Any]:
        p95 = self.p95()
        return {
            "t": self.t,
            "requests": self.requests,
            "errors": self.errors,
            "client_errors": self.client_errors,
            "p95_ms": None if p95 is None else round(p95 * 1000, 1),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost": round(self.cost, 6),
            "runs_completed": self.runs_completed,
            "runs_failed": self.runs_failed,
            "escalations": self.escalations,
        }


def _quantile(counts: list[int], q: float) -> float | None:
    """The ``q`` quantile of a bucketed histogram, interpolated inside its bucket."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            low = BOUNDS[i - 1] if i > 0 else 0.0
            high = BOUNDS[i] if i < len(BOUNDS) else BOUNDS[-1] * 2
            return low + (high - low) * ((rank - seen) / count)
        seen += count
    return BOUNDS[-1] * 2


class _Tenant:
    __slots__ = ("minutes", "recent")

    def __init__(self, keep: int, recent: int) -> None:
        self.minutes: deque[_Minute] = deque(maxlen=keep)
        self.recent: deque[dict[str, Any]] = deque(maxlen=recent)


_current: ContextVar[RequestRecord | None] = ContextVar("wayport_request_record", default=None)
_tenant: ContextVar[str | None] = ContextVar("wayport_timeseries_tenant", default=None)


class Timeseries:
    """A ring of per-minute aggregates per tenant (``minutes`` of them) and the last
    ``recent`` requests. ``clock`` returns seconds since the epoch."""

    def __init__(
        self,
        *,
        minutes: int = 1440,
        recent: int = 200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keep = minutes
        self._recent = recent
        self._clock = clock
        self._tenants: dict[str, _Tenant] = {}

    # ----------------------------------------------------------------- feeding

    def begin(self) -> tuple[RequestRecord, object]:
        """Start counting a request's tokens in this context; hand both to ``end``."""
        record = RequestRecord(began=self._clock())
        return record, _current.set(record)

    def end(
        self,
        started: tuple[RequestRecord, object],
        *,
        tenant: str,
        request_id: str,
        method: str,
        route: str,
        model: str,
        status: int,
        seconds: float,
    ) -> None:
        record, token = started
        _current.reset(token)  # type: ignore[arg-type]
        minute = self._minute(tenant)
        minute.requests += 1
        if status >= 500:
            minute.errors += 1
        elif status >= 400:
            minute.client_errors += 1
        minute.latency[bisect.bisect_left(BOUNDS, seconds)] += 1
        minute.tokens_in += record.tokens_in - record.charged_in
        minute.tokens_out += record.tokens_out - record.charged_out
        self._tenants[tenant].recent.append(
            {
                "t": round(record.began, 3),
                "request_id": request_id,
                "method": method,
                "route": route,
                "model": model or None,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "tokens_in": record.tokens_in,
                "tokens_out": record.tokens_out,
                "trace_id": record.trace_id,
            }
        )

    def set_trace(self, trace_id: str) -> None:
        """Note the trace of the request in context (the tracer calls this)."""
        record = _current.get()
        if record is not None:
            record.trace_id = trace_id

    @contextmanager
    def for_tenant(self, tenant: str) -> Iterator[None]:
        """Attribute tokens counted inside (an agent run's model calls) to ``tenant``."""
        token = _tenant.set(tenant)
        try:
            yield
        finally:
            _tenant.reset(token)

    def tokens(self, model: str, prompt: int, completion: int) -> None:
        """``UsageObserver.tokens``: shown on the request in context; charged to the minute
        of the agent run's tenant at once (a run may outlive the request that started it),
        else to the request's tenant when it ends."""
        record = _current.get()
        if record is not None:
            record.tokens_in += prompt
            record.tokens_out += completion
        tenant = _tenant.get()
        if tenant is None:
            return  # charged when the request ends, or nobody to charge (a warm-up)
        minute = self._minute(tenant)
        minute.tokens_in += prompt
        minute.tokens_out += completion
        if record is not None:
            record.charged_in += prompt
            record.charged_out += completion

    def first_token(self, model: str, seconds: float) -> None:
        pass

    def cost(self, tenant: str, amount: float) -> None:
        """Money spent, as priced by the usage ledger."""
        self._minute(tenant).cost += amount

    def run_finished(self, tenant: str, status: str) -> None:
        minute = self._minute(tenant)
        if status == "completed":
            minute.runs_completed += 1
        elif status == "failed":
            minute.runs_failed += 1

    def escalation(self, tenant: str) -> None:
        self._minute(tenant).escalations += 1

    # ----------------------------------------------------------------- reading

    def points(self, tenant: str, *, minutes: int = 60) -> list[dict[str, Any]]:
        """One point per minute for the last ``minutes`` (empty minutes included, as zeros),
        oldest first."""
        now = int(self._clock() // 60 * 60)
        start = now - (minutes - 1) * 60
        found = self._tenants.get(tenant)
        by_t = {m.t: m for m in found.minutes} if found is not None else {}
        return [(by_t.get(t) or _Minute(t=t)).point() for t in range(start, now + 1, 60)]

    def summary(self, tenant: str, *, minutes: int = 60) -> dict[str, Any]:
        """Totals over the last ``minutes``, with the p95 over all of them."""
        now = int(self._clock() // 60 * 60)
        start = now - (minutes - 1) * 60
        found = self._tenants.get(tenant)
        total = _Minute(t=start)
        for m in found.minutes if found is not None else ():
            if m.t < start:
                continue
            for name in ("requests", "errors", "client_errors", "tokens_in", "tokens_out"):
                setattr(total, name, getattr(total, name) + getattr(m, name))
            total.cost += m.cost
            total.runs_completed += m.runs_completed
            total.runs_failed += m.runs_failed
            total.escalations += m.escalations
            total.latency = [a + b for a, b in zip(total.latency, m.latency, strict=True)]
        point = total.point()
        finished = total.runs_completed + total.runs_failed
        point["minutes"] = minutes
        point["completion_rate"] = None if not finished else total.runs_completed / finished
        point["cost_per_task"] = None if not finished else total.cost / finished
        return point

    def recent(self, tenant: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """The last requests, newest first."""
        found = self._tenants.get(tenant)
        if found is None:
            return []
        return list(reversed(found.recent))[:limit]

    # ----------------------------------------------------------------- internals

    def _minute(self, tenant: str) -> _Minute:
        t = int(self._clock() // 60 * 60)
        found = self._tenants.get(tenant)
        if found is None:
            found = self._tenants[tenant] = _Tenant(self._keep, self._recent)
        minutes = found.minutes
        if minutes and minutes[-1].t == t:
            return minutes[-1]
        if minutes and minutes[-1].t > t:
            # The wall clock stepped back: keep adding to the newest minute.
            return minutes[-1]
        minute = _Minute(t=t)
        minutes.append(minute)
        return minute


class UsageObserver(Protocol):
    def tokens(self, model: str, prompt: int, completion: int) -> None: ...

    def first_token(self, model: str, seconds: float) -> None: ...


class Tee:
    """Hands the gateway's token and first-token reports to several observers (the
    Prometheus metrics and the series)."""

    __slots__ = ("_observers",)

    def __init__(self, *observers: UsageObserver) -> None:
        self._observers = observers

    def tokens(self, model: str, prompt: int, completion: int) -> None:
        for observer in self._observers:
            observer.tokens(model, prompt, completion)

    def first_token(self, model: str, seconds: float) -> None:
        for observer in self._observers:
            observer.first_token(model, seconds)
