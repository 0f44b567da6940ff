"""The ``Limiter`` contract: in process, SQLite and Postgres (and Redis, where wired) agree on
all-or-nothing reservations, draining buckets, windows, settling, tenants and races."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from wayport.core.errors import BudgetExceeded, RateLimited
from wayport.core.limits import Ask, Charge, CounterKind, Dimension, Limits, Subject, plan
from wayport.ports import Limiter
from wayport.runtime.limiter import LocalLimiter
from wayport.store import open_database
from wayport.store.budgets import SqlLimiter

pytestmark = pytest.mark.anyio

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC).timestamp()


@pytest.fixture
async def limiter(backend: str) -> AsyncIterator[Limiter]:
    if backend == "memory":
        yield LocalLimiter()
        return
    db = await open_database(backend)
    try:
        yield SqlLimiter(db)
    finally:
        await db.close()


def charges(limits: Limits, ask: Ask, subject: str = "k1") -> list[Charge]:
    return plan([(Subject("key", subject), limits)], ask, NOW)


async def test_reserve_is_all_or_nothing(limiter: Limiter, tenant: str) -> None:
    roomy = charges(Limits(rpm=100), Ask())
    tight = charges(Limits(spend_per_day=1.0), Ask(cost=0.75), subject="k2")
    await limiter.reserve(tenant, [*roomy, *tight], now=NOW)
    with pytest.raises(BudgetExceeded) as caught:
        await limiter.reserve(tenant, [*roomy, *tight], now=NOW)
    assert caught.value.code == "budget_exceeded"
    assert caught.value.retry_after == pytest.approx(12 * 3600)
    # the rpm charge before the refused one was rolled back
    assert await limiter.used(tenant, roomy[0], now=NOW) == 1.0
    assert await limiter.used(tenant, tight[0], now=NOW) == 0.75


async def test_rate_counters_drain(limiter: Limiter, tenant: str) -> None:
    rpm = charges(Limits(rpm=2), Ask())
    await limiter.reserve(tenant, rpm, now=NOW)
    await limiter.reserve(tenant, rpm, now=NOW)
    with pytest.raises(RateLimited) as caught:
        await limiter.reserve(tenant, rpm, now=NOW + 1)
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.retry_after == pytest.approx(29.0)  # 2 per minute: one per 30 s
    await limiter.reserve(tenant, rpm, now=NOW + 30)
    assert await limiter.used(tenant, rpm[0], now=NOW + 60) == pytest.approx(1.0)


async def test_adjust_settles_and_never_refuses(limiter: Limiter, tenant: str) -> None:
    budget = charges(Limits(spend_per_day=1.0), Ask(cost=0.6))
    await limiter.reserve(tenant, budget, now=NOW)
    await limiter.adjust(tenant, [(budget[0], -0.5)], now=NOW)  # it cost 0.1
    assert await limiter.used(tenant, budget[0], now=NOW) == pytest.approx(0.1)
    await limiter.adjust(tenant, [(budget[0], 2.0)], now=NOW)  # an estimate that was short
    assert await limiter.used(tenant, budget[0], now=NOW) == pytest.approx(2.1)
    await limiter.adjust(tenant, [(budget[0], -9.0)], now=NOW)
    assert await limiter.used(tenant, budget[0], now=NOW) == 0.0


async def test_a_new_day_starts_from_zero(limiter: Limiter, tenant: str) -> None:
    await limiter.reserve(tenant, charges(Limits(spend_per_day=1.0), Ask(cost=1.0)), now=NOW)
    with pytest.raises(BudgetExceeded):
        await limiter.reserve(tenant, charges(Limits(spend_per_day=1.0), Ask(cost=0.1)), now=NOW)
    tomorrow = NOW + 86_400
    later = plan([(Subject("key", "k1"), Limits(spend_per_day=1.0))], Ask(cost=1.0), tomorrow)
    await limiter.reserve(tenant, later, now=tomorrow)


async def test_concurrent_runs_are_held_until_given_back(limiter: Limiter, tenant: str) -> None:
    run = charges(Limits(concurrent_runs=1), Ask(run=True))
    await limiter.reserve(tenant, run, now=NOW)
    with pytest.raises(RateLimited):
        await limiter.reserve(tenant, run, now=NOW + 3600)  # no draining
    await limiter.adjust(tenant, [(run[0], -1.0)], now=NOW + 3600)
    await limiter.reserve(tenant, run, now=NOW + 3600)


async def test_tenants_do_not_share_counters(limiter: Limiter, tenant: str) -> None:
    budget = charges(Limits(spend_per_day=1.0), Ask(cost=1.0))
    await limiter.reserve(tenant, budget, now=NOW)
    await limiter.reserve(f"{tenant}-other", budget, now=NOW)
    assert await limiter.used(f"{tenant}-third", budget[0], now=NOW) == 0.0


async def test_racing_reservations_never_overspend(limiter: Limiter, tenant: str) -> None:
    """100 concurrent reservations of 0.03 against a budget of 1.00: exactly 33 fit."""
    budget = charges(Limits(spend_per_day=1.0), Ask(cost=0.03))

    async def one() -> bool:
        try:
            await limiter.reserve(tenant, budget, now=NOW)
        except BudgetExceeded:
            return False
        return True

    admitted = await asyncio.gather(*(one() for _ in range(100)))
    assert sum(admitted) == 33
    assert await limiter.used(tenant, budget[0], now=NOW) == pytest.approx(0.99)


def test_charges_for_every_kind() -> None:
    kinds = {
        c.kind
        for c in charges(
            Limits(rpm=1, tpm=1, concurrent_runs=1, spend_per_month=1.0),
            Ask(tokens=1, cost=0.5, run=True),
        )
    }
    assert kinds == {CounterKind.RATE, CounterKind.CONCURRENT, CounterKind.WINDOW}
    assert Dimension.TPM.value == "tpm"
