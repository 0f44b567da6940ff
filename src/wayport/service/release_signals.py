"""Agent signals per version, for release analysis: a ``RunObserver`` that counts each
finished run (status, latency, time to its first text, cost) and each tool call in the
process's time slices, and writes them to the release store when flushed (the reconciler
flushes before it reads, and every replica's slices are merged there)::

    signals = SignalCollector(replica="pod-1")
    agents.observer = Observers(telemetry, signals)      # before agents.start()
    await signals.flush(store)                            # reconciler tick
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from wayport.core.agent import AgentSpec, RunFinished, ToolResult
from wayport.core.release_signals import Aggregate
from wayport.core.session import Run, RunStatus
from wayport.core.types import ToolCall, Usage
from wayport.ports import ReleaseStore, RunObserver, RunWatch

_Key = tuple[str, str, str, float]  # tenant, agent, version, bucket

Price = Callable[[AgentSpec, Usage], float]


class _Watch(Protocol):
    def first_token(self) -> None: ...

    def finished(self, event: RunFinished) -> None: ...


class SignalCollector:
    def __init__(
        self,
        *,
        replica: str,
        bucket_seconds: float = 10.0,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        price: Price | None = None,
    ) -> None:
        """``bucket_seconds``: the width of a time slice; ``price``: a run's cost from its
        usage (default: none counted)."""
        self.replica = replica
        self.bucket_seconds = bucket_seconds
        self._wall = wall
        self._monotonic = monotonic
        self._price = price
        self._pending: dict[_Key, Aggregate] = {}
        self._running: dict[str, tuple[str, str]] = {}  #: run id -> (agent, version)
        self.recent: dict[str, tuple[str, str]] = {}  #: finished run id -> (agent, version)
        self._failed_over: dict[str, str] = {}  #: run id -> the version that took it over

    def bucket(self, at: float) -> float:
        return math.floor(at / self.bucket_seconds) * self.bucket_seconds

    def _slot(self, tenant: str, agent: str, version: str) -> Aggregate:
        key = (tenant, agent, version, self.bucket(self._wall()))
        found = self._pending.get(key)
        if found is None:
            found = self._pending[key] = Aggregate()
        return found

    @contextlib.contextmanager
    def run(self, run: Run, agent: AgentSpec) -> Iterator[RunWatch]:
        began = self._monotonic()
        version = run.agent_version or agent.version
        self._running[run.id] = (agent.name, version)
        collector = self

        first: list[float] = []  #: when the first text delta was produced

        class Watch:
            def first_token(self) -> None:
                if not first:
                    first.append(collector._monotonic())

            def finished(self, event: RunFinished) -> None:
                status = event.run.status
                if status is RunStatus.REQUIRES_APPROVAL or status is RunStatus.CANCELLED:
                    return  # neither a success nor a failure of the version
                cost = collector._price(agent, event.usage) if collector._price else 0.0
                answered_by = collector._failed_over.pop(run.id, version)
                collector._slot(run.tenant_id, agent.name, answered_by).add_run(
                    error=status is RunStatus.FAILED,
                    latency_ms=(collector._monotonic() - began) * 1000.0,
                    ttft_ms=(first[0] - began) * 1000.0 if first else None,
                    cost=cost,
                )
                collector.recent[run.id] = (agent.name, answered_by)
                if len(collector.recent) > 10_000:
                    collector.recent.pop(next(iter(collector.recent)))

        try:
            yield Watch()
        finally:
            self._running.pop(run.id, None)
            self._failed_over.pop(run.id, None)

    async def tool(self, run: Run, call: ToolCall, result: Awaitable[ToolResult]) -> ToolResult:
        try:
            done = await result
        except BaseException:
            self._tool(run, failed=True)
            raise
        self._tool(run, failed=done.is_error)
        return done

    def _tool(self, run: Run, *, failed: bool) -> None:
        owner = self._running.get(run.id)
        if owner is not None:
            self._slot(run.tenant_id, *owner).add_tool(failed=failed)

    def record_failover(self, run: Run, agent: str, version: str, stable: str) -> None:
        """``run`` failed on ``version`` before answering and is retried on ``stable``: one
        failure of the candidate; the run's outcome counts for stable."""
        self._slot(run.tenant_id, agent, version).add_run(
            error=True, latency_ms=0.0, ttft_ms=None, cost=0.0
        )
        self._failed_over[run.id] = stable
        if run.id in self._running:
            self._running[run.id] = (agent, stable)

    async def flush(self, store: ReleaseStore) -> None:
        """Write the slices counted so far; on failure they are kept for the next flush."""
        pending, self._pending = self._pending, {}
        by_tenant: dict[str, list[tuple[str, str, float, Aggregate]]] = {}
        for (tenant, agent, version, bucket), aggregate in pending.items():
            by_tenant.setdefault(tenant, []).append((agent, version, bucket, aggregate))
        for tenant, slices in by_tenant.items():
            try:
                await store.add_signals(tenant, slices, replica=self.replica)
            except BaseException:
                for agent, version, bucket, aggregate in slices:
                    self._pending.setdefault((tenant, agent, version, bucket), Aggregate()).merge(
                        aggregate
                    )
                raise


class Observers:
    """Several run observers as one (telemetry and release signals)."""

    def __init__(self, *observers: RunObserver) -> None:
        self._observers = observers

    @contextlib.contextmanager
    def run(self, run: Run, agent: AgentSpec) -> Iterator[RunWatch]:
        with contextlib.ExitStack() as stack:
            watches: list[_Watch] = [
                stack.enter_context(o.run(run, agent)) for o in self._observers
            ]

            class Both:
                def first_token(self) -> None:
                    for watch in watches:
                        watch.first_token()

                def finished(self, event: RunFinished) -> None:
                    for watch in watches:
                        watch.finished(event)

            yield Both()

    async def tool(self, run: Run, call: ToolCall, result: Awaitable[ToolResult]) -> ToolResult:
        for observer in reversed(self._observers):
            result = observer.tool(run, call, result)
        return await result
