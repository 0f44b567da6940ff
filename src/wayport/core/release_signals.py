"""Per-version signal aggregates that merge: every replica counts its own runs in time slices,
the store keeps the slices, and the reconciler sums them over the analysis window.

Latencies go into a log-scale histogram (buckets 10 % wide), so a quantile of the merged
histogram is within 10 % of the exact one, whatever the number of replicas::

    >>> a = Aggregate(); a.add_run(error=False, latency_ms=120.0, ttft_ms=40.0, cost=0.01)
    >>> b = Aggregate(); b.add_run(error=True, latency_ms=900.0, ttft_ms=None, cost=0.0)
    >>> s = merged([a, b]).signals()
    >>> (s.requests, s.errors, round(s.p95_latency_ms or 0) in range(810, 991))
    (2, 1, True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wayport.core.release import Signals

_GROWTH = 1.1
_LOG_GROWTH = math.log(_GROWTH)


def _index(ms: float) -> int:
    return 0 if ms <= 1.0 else math.ceil(math.log(ms) / _LOG_GROWTH)


def _upper(index: int) -> float:
    return _GROWTH**index


def quantile(histogram: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram, as its bucket's upper bound."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = q * total
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return _upper(index)
    return _upper(max(histogram))


@dataclass(slots=True, kw_only=True)
class Aggregate:
    """What one replica saw of one version in one time slice."""

    requests: int = 0
    errors: int = 0
    cost: float = 0.0
    tool_calls: int = 0
    tool_failures: int = 0
    latency: dict[int, int] = field(default_factory=dict)
    ttft: dict[int, int] = field(default_factory=dict)

    def add_run(
        self, *, error: bool, latency_ms: float, ttft_ms: float | None, cost: float
    ) -> None:
        self.requests += 1
        self.errors += int(error)
        self.cost += cost
        slot = _index(latency_ms)
        self.latency[slot] = self.latency.get(slot, 0) + 1
        if ttft_ms is not None:
            slot = _index(ttft_ms)
            self.ttft[slot] = self.ttft.get(slot, 0) + 1

    def add_tool(self, *, failed: bool) -> None:
        self.tool_calls += 1
        self.tool_failures += int(failed)

    def merge(self, other: Aggregate) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.cost += other.cost
        self.tool_calls += other.tool_calls
        self.tool_failures += other.tool_failures
        for mine, theirs in ((self.latency, other.latency), (self.ttft, other.ttft)):
            for index, count in theirs.items():
                mine[index] = mine.get(index, 0) + count

    def signals(
        self,
        *,
        feedback_up: int = 0,
        feedback_down: int = 0,
        eval_score: float | None = None,
    ) -> Signals:
        return Signals(
            requests=self.requests,
            errors=self.errors,
            p95_latency_ms=quantile(self.latency, 0.95),
            p95_ttft_ms=quantile(self.ttft, 0.95),
            cost=self.cost,
            tool_calls=self.tool_calls,
            tool_failures=self.tool_failures,
            feedback_up=feedback_up,
            feedback_down=feedback_down,
            eval_score=eval_score,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "cost": self.cost,
            "tool_calls": self.tool_calls,
            "tool_failures": self.tool_failures,
            # JSON keys are strings
            "latency": {str(k): v for k, v in self.latency.items()},
            "ttft": {str(k): v for k, v in self.ttft.items()},
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Aggregate:
        return cls(
            requests=int(raw.get("requests", 0)),
            errors=int(raw.get("errors", 0)),
            cost=float(raw.get("cost", 0.0)),
            tool_calls=int(raw.get("tool_calls", 0)),
            tool_failures=int(raw.get("tool_failures", 0)),
            latency={int(k): int(v) for k, v in dict(raw.get("latency") or {}).items()},
            ttft={int(k): int(v) for k, v in dict(raw.get("ttft") or {}).items()},
        )


def merged(parts: Iterable[Aggregate]) -> Aggregate:
    total = Aggregate()
    for part in parts:
        total.merge(part)
    return total
