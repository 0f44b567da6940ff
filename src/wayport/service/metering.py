"""Limits and the ledger around one request or run: what the server's handlers call.

meter = await metering.begin(principal, kind="request", model="gpt-4o-mini",
                             max_tokens=256, prompt_chars=len(body))   # may raise 429
try:
    completion = await gateway.complete(request)
except BaseException:
    await meter.done(None, status="failed")
    raise
await meter.done(completion.usage)            # settles the reservation, records the usage
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from wayport.core.identity import Principal
from wayport.core.ids import new_id
from wayport.core.types import Usage
from wayport.core.usage import UsageKind, UsageRecord
from wayport.service.limits import Held, LimitsService
from wayport.service.usage import UsageService


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentInfo:
    name: str
    version: str
    model: str
    max_steps: int = 1
    max_tokens: int | None = None


class Meter:
    __slots__ = ("_began", "_held", "_kind", "_metering", "_principal", "agent", "done_once")

    def __init__(
        self,
        metering: Metering,
        principal: Principal,
        held: Held,
        kind: UsageKind,
        agent: AgentInfo | None,
    ) -> None:
        self._metering = metering
        self._principal = principal
        self._held = held
        self._kind: UsageKind = kind
        self.agent = agent
        self._began = time.perf_counter()
        self.done_once = False

    async def done(
        self,
        usage: Usage | None,
        *,
        status: str = "completed",
        run_id: str | None = None,
        session_id: str | None = None,
        keep: bool = False,
    ) -> None:
        """Settle (``usage`` ``None``: nothing was used; with ``keep``: unknown, so the
        reservation stands) and record; only the first call counts."""
        if self.done_once:
            return
        self.done_once = True
        m = self._metering
        cost = m.limits.settle_unreserved(self._held, usage, keep=keep)
        if cost is None:
            cost = await m.limits.settle(self._held, usage, keep=keep)
        if m.usage is None:
            return
        used = usage if usage is not None else Usage()
        p, agent = self._principal, self.agent
        m.usage.record(
            UsageRecord(
                tenant=p.tenant,
                id=new_id("use"),
                at=m.wall(),
                kind=self._kind,
                model=self._held.model,
                prompt_tokens=used.prompt_tokens,
                completion_tokens=used.completion_tokens,
                cost=cost,
                latency_ms=round((time.perf_counter() - self._began) * 1000, 3),
                status=status,
                key_id=p.key_id,
                user=p.user,
                agent=agent.name if agent is not None else None,
                agent_version=agent.version if agent is not None else None,
                session_id=session_id,
                run_id=run_id,
            )
        )


class Metering:
    def __init__(
        self,
        *,
        limits: LimitsService,
        usage: UsageService | None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``limits`` also holds the prices (with no limits configured it only prices);
        ``usage``: where records go (``None``: nowhere)."""
        self.limits = limits
        self.usage = usage
        self.wall = wall

    async def begin(
        self,
        principal: Principal,
        *,
        model: str,
        max_tokens: int | None,
        prompt_chars: int,
        messages: int = 1,
        agent: AgentInfo | None = None,
    ) -> Meter:
        """Admit the request (raises ``RateLimited``/``BudgetExceeded``) and start timing.
        With ``agent`` it is a run: its model, steps and ``concurrent_runs`` count."""
        kind: UsageKind = "run" if agent is not None else "request"
        if agent is not None:
            model = agent.model
            max_tokens = agent.max_tokens if agent.max_tokens is not None else max_tokens
        held = await self.limits.admit(
            principal,
            model=model,
            max_tokens=max_tokens,
            prompt_chars=prompt_chars,
            messages=messages,
            agent=agent.name if agent is not None else None,
            steps=agent.max_steps if agent is not None else 1,
            run=agent is not None,
        )
        return Meter(self, principal, held, kind, agent)
