"""Rate limits and budgets, enforced: reserve before the work, settle after.

    limits = LimitsService(policy=LimitPolicy(config.limits.by_scope()),
                           prices=config.price_table(), limiter=LocalLimiter())
    limits.attach_budgets(SqlLimiter(db))            # spend windows survive restarts
    held = await limits.admit(principal, model="gpt-4o-mini", max_tokens=256,
                              prompt_chars=1800, messages=3)   # raises RateLimited (429)
    …
    await limits.settle(held, completion.usage)      # or settle(held, None): it failed

Which counters a request moves follows from who asks (``Principal``: tenant, key, user) and
what (model, agent): every subject with a limit set contributes its charges, and all of them
are reserved at once or none is. Spend windows live in the ``budgets`` limiter (SQL, shared and
durable), the per-minute rates and runs in flight in ``limiter`` (in process, or Redis when
several replicas share them). Budgets are reserved first; when a rate then refuses, the
budgets are given back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from wayport.core.identity import Principal
from wayport.core.limits import (
    Ask,
    Charge,
    CounterKind,
    Limits,
    Subject,
    estimate_prompt_tokens,
    plan,
    settlement,
)
from wayport.core.pricing import Price, PriceTable
from wayport.core.types import Usage
from wayport.ports import Limiter

ANY = "*"


class LimitPolicy:
    """The configured limits: per scope (``tenant``, ``key``, ``user``, ``agent``), a ``"*"``
    entry for every subject and named entries merged over it."""

    def __init__(self, by_scope: Mapping[str, Mapping[str, Limits]] | None = None) -> None:
        self._by_scope = {scope: dict(named) for scope, named in (by_scope or {}).items()}
        self.enabled = any(
            not lim.empty for named in self._by_scope.values() for lim in named.values()
        )

    def limits_for(self, subject: Subject) -> Limits | None:
        named = self._by_scope.get(subject.scope)
        if not named:
            return None
        base = named.get(ANY)
        own = named.get(subject.id)
        if own is None:
            return base
        return base.merged(own) if base is not None else own


@dataclass(slots=True, kw_only=True)
class Held:
    """What one admitted request reserved; settle it exactly once."""

    tenant: str
    model: str
    price: Price
    charges: list[Charge] = field(default_factory=list)
    max_cost: float = 0.0
    settled: bool = False

    def cost(self, usage: Usage) -> float:
        return self.price.cost(usage.prompt_tokens, usage.completion_tokens)


class LimitsService:
    def __init__(
        self,
        *,
        policy: LimitPolicy | None = None,
        prices: PriceTable | None = None,
        limiter: Limiter,
        budgets: Limiter | None = None,
        default_max_tokens: int = 4096,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``limiter`` keeps every counter unless ``budgets`` is given (or attached later),
        which then keeps the spend windows."""
        self.policy = policy if policy is not None else LimitPolicy()
        self.prices = prices if prices is not None else PriceTable.default()
        self._limiter = limiter
        self._budgets = budgets
        self._default_max_tokens = default_max_tokens
        self._wall = wall

    @property
    def enabled(self) -> bool:
        return self.policy.enabled

    def attach_budgets(self, budgets: Limiter) -> None:
        """Keep spend windows in ``budgets`` from now on (the store, once it is open)."""
        self._budgets = budgets

    def price(self, model: str) -> Price:
        return self.prices.price(model)

    async def admit(
        self,
        principal: Principal,
        *,
        model: str,
        max_tokens: int | None,
        prompt_chars: int,
        messages: int = 1,
        agent: str | None = None,
        steps: int = 1,
        run: bool = False,
    ) -> Held:
        """Reserve the request's worst case on every counter that applies, or raise
        ``RateLimited``/``BudgetExceeded`` (429, ``retry_after``) having reserved nothing.
        ``steps``: model calls the request may make (an agent run's ``max_steps``)."""
        price = self.prices.price(model)
        completion = max_tokens if max_tokens is not None else self._default_max_tokens
        prompt = estimate_prompt_tokens(prompt_chars, messages)
        tokens = (prompt + completion) * max(1, steps)
        max_cost = price.cost(prompt * max(1, steps), completion * max(1, steps))
        held = Held(tenant=principal.tenant, model=model, price=price, max_cost=max_cost)
        if not self.policy.enabled:
            return held
        subjects = self._subjects(principal, agent)
        if not subjects:
            return held
        now = self._wall()
        charges = plan(subjects, Ask(tokens=tokens, cost=max_cost, run=run), now)
        windows = [c for c in charges if c.kind is CounterKind.WINDOW]
        rates = [c for c in charges if c.kind is not CounterKind.WINDOW]
        budgets = self._budgets or self._limiter
        if windows:
            await budgets.reserve(principal.tenant, windows, now=now)
        if rates:
            try:
                await self._limiter.reserve(principal.tenant, rates, now=now)
            except BaseException:
                undo = [(c, -c.amount) for c in windows]
                await asyncio.shield(budgets.adjust(principal.tenant, undo, now=now))
                raise
        held.charges = charges
        return held

    def settle_unreserved(
        self, held: Held, usage: Usage | None, *, keep: bool = False
    ) -> float | None:
        """``settle`` without an await when ``held`` reserved nothing (no limit applied to
        it: the request path's usual case): its cost; ``None`` when there are reservations,
        which ``settle`` gives back."""
        if held.charges:
            return None
        if held.settled:
            return 0.0
        held.settled = True
        if keep:
            return held.max_cost
        return held.cost(usage) if usage is not None else 0.0

    async def settle(self, held: Held, usage: Usage | None, *, keep: bool = False) -> float:
        """Settle with what the request used (``None``: it failed; give everything back but
        the request itself); return its cost. ``keep``: what it used is unknown (its client
        left mid-answer), so the whole reservation stands as its cost. Runs to the end even
        if the caller is cancelled meanwhile."""
        if held.settled:
            return 0.0
        held.settled = True
        cost = held.cost(usage) if usage is not None else 0.0
        if keep:
            cost = held.max_cost
        if held.charges:
            task = asyncio.ensure_future(self._settle(held, usage, cost, keep))
            await asyncio.shield(task)
        return cost

    async def _settle(self, held: Held, usage: Usage | None, cost: float, keep: bool) -> None:
        tokens = usage.total_tokens if usage is not None else None
        moves = settlement(held.charges, tokens=tokens, cost=cost if usage is not None else None)
        if keep:
            moves = [(c, d) for c, d in moves if c.kind is CounterKind.CONCURRENT]
        now = self._wall()
        windows = [(c, d) for c, d in moves if c.kind is CounterKind.WINDOW]
        rates = [(c, d) for c, d in moves if c.kind is not CounterKind.WINDOW]
        if windows:
            await (self._budgets or self._limiter).adjust(held.tenant, windows, now=now)
        if rates:
            await self._limiter.adjust(held.tenant, rates, now=now)

    def _subjects(self, principal: Principal, agent: str | None) -> list[tuple[Subject, Limits]]:
        wanted = [Subject("tenant", principal.tenant)]
        if principal.key_id is not None:
            wanted.append(Subject("key", principal.key_id))
        if principal.user is not None:
            wanted.append(Subject("user", principal.user))
        if agent is not None:
            wanted.append(Subject("agent", agent))
        found: list[tuple[Subject, Limits]] = []
        for subject in wanted:
            limits = self.policy.limits_for(subject)
            if limits is not None and not limits.empty:
                found.append((subject, limits))
        return found
