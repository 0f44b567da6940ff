"""The in-process ``Limiter``: counters in a dict, for one process.

Atomic by construction: ``reserve`` checks every charge and applies them without awaiting in
between, so on one event loop no other request can slip in. Counters live as long as the
process (a restart forgets them); spend budgets that must survive restarts use
``wayport.store.budgets``, and counters shared by several replicas ``wayport.store.redis_limiter``.

    limiter = LocalLimiter()
    await limiter.reserve("acme", charges, now=time.time())
"""

from __future__ import annotations

from collections.abc import Sequence

from wayport.core.limits import Charge, Counter, CounterKind, adjust, current, refusal, take

_SWEEP_EVERY = 10_000


class LocalLimiter:
    def __init__(self) -> None:
        self._counters: dict[tuple[str, str], Counter] = {}
        self._expires: dict[tuple[str, str], float] = {}  #: window counters: when they end
        self._drain: dict[tuple[str, str], float] = {}  #: rate counters: units per second
        self._ops = 0

    async def reserve(self, tenant: str, charges: Sequence[Charge], *, now: float) -> None:
        counters = self._counters
        taken: list[tuple[tuple[str, str], Counter]] = []
        for charge in charges:
            key = (tenant, charge.key)
            counter = counters.get(key)
            after, wait = take(counter, charge, now)
            if wait is not None:
                raise refusal(charge, counter, now)
            taken.append((key, after))
        for (key, after), charge in zip(taken, charges, strict=True):
            counters[key] = after
            if charge.kind is CounterKind.WINDOW:
                self._expires[key] = charge.expires
            elif charge.kind is CounterKind.RATE:
                self._drain[key] = charge.drain
        self._maybe_sweep(now)

    async def adjust(
        self, tenant: str, moves: Sequence[tuple[Charge, float]], *, now: float
    ) -> None:
        for charge, delta in moves:
            key = (tenant, charge.key)
            self._counters[key] = adjust(self._counters.get(key), charge, delta, now)

    async def used(self, tenant: str, charge: Charge, *, now: float) -> float:
        return current(self._counters.get((tenant, charge.key)), charge, now)

    def _maybe_sweep(self, now: float) -> None:
        self._ops += 1
        if self._ops % _SWEEP_EVERY:
            return
        # drained counters and ended windows need no memory
        stale = [key for key, ends in self._expires.items() if ends <= now]
        for key, c in self._counters.items():
            if key not in self._expires:
                drained = c.used - max(0.0, now - c.at) * self._drain.get(key, 0.0)
                if drained <= 0:
                    stale.append(key)
        for key in stale:
            self._counters.pop(key, None)
            self._expires.pop(key, None)
            self._drain.pop(key, None)
