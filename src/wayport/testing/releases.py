"""The ``ReleaseStore`` in memory, for tests and single-process setups without SQL. It follows
the same contract as ``wayport.store.releases.SqlReleaseStore`` (tests/contract checks both).

    store = MemoryReleaseStore(now=clock.now, stores=memory_stores)  # versions from its runs
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from wayport.core.errors import Conflict
from wayport.core.release import TERMINAL, RolloutState, Strategy
from wayport.core.release_records import (
    EvalResult,
    Feedback,
    ReleaseEvent,
    Rollout,
    VersionInfo,
)
from wayport.core.release_signals import Aggregate
from wayport.store.releases import event_id
from wayport.testing.stores import MemoryStores


class MemoryReleaseStore:
    def __init__(
        self, *, stores: MemoryStores | None = None, now: Callable[[], float] = time.time
    ) -> None:
        self._stores = stores
        self._now = now
        self._rollouts: dict[tuple[str, str], Rollout] = {}
        self._events: dict[tuple[str, str], list[ReleaseEvent]] = {}
        self._signals: dict[tuple[str, str, str, float, str], Aggregate] = {}
        self._feedback: dict[tuple[str, str], Feedback] = {}
        self._evals: list[tuple[str, EvalResult]] = []
        self._seen: dict[tuple[str, str, str], float] = {}

    async def rollout(self, tenant: str, agent: str) -> Rollout | None:
        return self._rollouts.get((tenant, agent))

    async def rollouts(self, tenant: str) -> list[Rollout]:
        return [r for (t, _), r in sorted(self._rollouts.items()) if t == tenant]

    async def put_rollout(
        self,
        tenant: str,
        state: RolloutState,
        strategy: Strategy,
        *,
        expected: int | None,
        window_start: float,
        now: float,
    ) -> Rollout:
        key = (tenant, state.agent)
        found = self._rollouts.get(key)
        if expected is None and found is not None:
            if found.state.phase not in TERMINAL:
                raise Conflict(
                    f"a rollout of {state.agent!r} is in progress; promote or abort it first",
                    code="rollout_in_progress",
                )
            expected = found.revision
        if (found.revision if found is not None else None) != expected:
            raise Conflict(
                f"the rollout of {state.agent!r} changed meanwhile", code="rollout_changed"
            )
        saved = Rollout(
            state=state,
            strategy=strategy,
            revision=1 if found is None else found.revision + 1,
            window_start=window_start,
            updated_at=now,
        )
        self._rollouts[key] = saved
        return saved

    async def add_event(
        self, tenant: str, agent: str, event: str, detail: Mapping[str, Any], *, at: float
    ) -> ReleaseEvent:
        made = ReleaseEvent(id=event_id(), agent=agent, event=event, detail=dict(detail), at=at)
        self._events.setdefault((tenant, agent), []).append(made)
        return made

    async def events(self, tenant: str, agent: str, *, limit: int = 50) -> list[ReleaseEvent]:
        found = self._events.get((tenant, agent), [])
        return sorted(found, key=lambda e: (e.at, e.id), reverse=True)[:limit]

    async def add_signals(
        self,
        tenant: str,
        slices: Sequence[tuple[str, str, float, Aggregate]],
        *,
        replica: str,
    ) -> None:
        for agent, version, bucket, aggregate in slices:
            total = self._signals.setdefault((tenant, agent, version, bucket, replica), Aggregate())
            total.merge(aggregate)

    async def signals(self, tenant: str, agent: str, version: str, *, since: float) -> Aggregate:
        total = Aggregate()
        for (t, a, v, bucket, _), part in self._signals.items():
            if (t, a, v) == (tenant, agent, version) and bucket >= since:
                total.merge(part)
        return total

    async def add_feedback(self, tenant: str, feedback: Feedback) -> None:
        self._feedback[(tenant, feedback.run_id)] = feedback

    async def feedback_counts(
        self, tenant: str, agent: str, version: str, *, since: float
    ) -> tuple[int, int]:
        votes = [
            f.score
            for (t, _), f in self._feedback.items()
            if t == tenant and (f.agent, f.version) == (agent, version) and f.at >= since
        ]
        return votes.count(1), votes.count(-1)

    async def add_eval(self, tenant: str, result: EvalResult) -> None:
        self._evals.append((tenant, replace(result, results=list(result.results))))

    async def latest_eval(
        self, tenant: str, agent: str, version: str, *, suite: str | None = None
    ) -> EvalResult | None:
        found = [
            r
            for t, r in self._evals
            if t == tenant
            and (r.agent, r.version) == (agent, version)
            and (suite is None or r.suite == suite)
        ]
        return max(found, key=lambda r: (r.at, r.id), default=None)

    async def versions(self, tenant: str, agent: str) -> list[VersionInfo]:
        if self._stores is None:
            return []
        # the memory run store's pinned definitions (testing code may look inside)
        pinned = self._stores.runs._s.agents
        out: list[VersionInfo] = []
        for t, name, version in pinned:
            if (t, name) == (tenant, agent):
                seen = self._seen.setdefault((t, name, version), self._now())
                out.append(VersionInfo(agent=name, version=version, created_at=seen))
        return out
