"""The Redis ``Limiter``: a limit holds across replicas (two clients racing on the real
Redis), all charges of a reservation move or none, settling moves counters."""

from __future__ import annotations

import asyncio

import pytest

from wayport.core.errors import RateLimited
from wayport.core.limits import Charge, CounterKind, Dimension
from wayport.store.redis_limiter import RedisLimiter

pytestmark = [pytest.mark.anyio, pytest.mark.redis]
NOW = 1_750_000_000.0


def rpm(key: str, limit: float) -> Charge:
    return Charge(key=key, kind=CounterKind.RATE, dimension=Dimension.RPM, limit=limit, amount=1)


async def test_a_limit_holds_across_replicas(redis_url: str, prefix: str) -> None:
    replicas = [RedisLimiter(redis_url, prefix=prefix) for _ in range(3)]
    charge = rpm("key:k1:rpm", 5)

    async def attempt(i: int) -> bool:
        try:
            await replicas[i % 3].reserve("acme", [charge], now=NOW)
        except RateLimited:
            return False
        return True

    try:
        results = await asyncio.gather(*(attempt(i) for i in range(30)))
        assert sum(results) == 5
        assert await replicas[0].used("acme", charge, now=NOW) == 5
        assert await replicas[1].used("other", charge, now=NOW) == 0  # per tenant
        # a minute later the rate has drained
        await replicas[2].reserve("acme", [charge], now=NOW + 60)
    finally:
        for r in replicas:
            await r.close()


async def test_all_charges_or_none(redis_url: str, prefix: str) -> None:
    limiter = RedisLimiter(redis_url, prefix=prefix)
    roomy, tight = rpm("a", 10), rpm("b", 1)
    try:
        await limiter.reserve("t", [tight], now=NOW)
        with pytest.raises(RateLimited) as refused:
            await limiter.reserve("t", [roomy, tight], now=NOW)
        assert refused.value.retry_after is not None
        assert await limiter.used("t", roomy, now=NOW) == 0
        await limiter.adjust("t", [(roomy, 4.0), (tight, -1.0)], now=NOW)
        assert await limiter.used("t", roomy, now=NOW) == 4
        assert await limiter.used("t", tight, now=NOW) == 0
    finally:
        await limiter.close()
