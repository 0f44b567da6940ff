"""The usage ledger's rows: one per model request and one per agent run, with what it used,
what that cost and who asked; and the totals a query groups them into.

    record = UsageRecord(tenant="acme", id=new_id("use"), at=time.time(), kind="request",
                         model="gpt-4o-mini", prompt_tokens=1200, completion_tokens=300,
                         cost=0.00036, latency_ms=812.0, status="completed", key_id="k1")
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

UsageKind = Literal["request", "run"]

#: What ``GET /v1/usage?group_by=`` and ``wayport usage --group-by`` accept.
GROUPS = ("model", "agent", "key", "user", "tenant", "session", "run", "kind", "day")


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageRecord:
    tenant: str
    id: str
    at: float  #: epoch seconds when the request or run ended
    kind: UsageKind
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0  #: dollars, from the price table at the time
    latency_ms: float = 0.0
    status: str = "completed"  #: completed, failed, cancelled …
    key_id: str | None = None
    user: str | None = None
    agent: str | None = None
    agent_version: str | None = None
    session_id: str | None = None
    run_id: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageTotal:
    """The records of one group added up. ``group`` is ``""`` for records without a value
    (requests made with no key, say)."""

    group: str
    requests: int = 0  #: records of kind ``request``
    runs: int = 0  #: records of kind ``run``
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_ms: float = 0.0  #: mean

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def check_group(group_by: str) -> str:
    if group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}, not {group_by!r}")
    return group_by


def totals(records: list[UsageRecord], group_by: str) -> list[UsageTotal]:
    """Group in memory (the memory store, and the reference the SQL stores are tested against);
    largest cost first, then by group."""
    check_group(group_by)
    sums: dict[str, list[float]] = {}
    for r in records:
        if group_by == "day":
            key = datetime.fromtimestamp(r.at, UTC).strftime("%Y-%m-%d")
        else:
            attr = {"key": "key_id", "session": "session_id", "run": "run_id"}.get(
                group_by, group_by
            )
            key = getattr(r, attr) or ""
        s = sums.setdefault(key, [0, 0, 0, 0, 0.0, 0.0])
        s[0 if r.kind == "request" else 1] += 1
        s[2] += r.prompt_tokens
        s[3] += r.completion_tokens
        s[4] += r.cost
        s[5] += r.latency_ms
    found = [
        UsageTotal(
            group=key,
            requests=int(s[0]),
            runs=int(s[1]),
            prompt_tokens=int(s[2]),
            completion_tokens=int(s[3]),
            cost=s[4],
            latency_ms=s[5] / (s[0] + s[1]) if s[0] + s[1] else 0.0,
        )
        for key, s in sums.items()
    ]
    return sorted(found, key=lambda t: (-t.cost, t.group))
