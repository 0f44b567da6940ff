"""The ``Limiter`` on Redis: rate limits and concurrency counters shared by every replica.

    limiter = RedisLimiter("redis://127.0.0.1:6379/0", prefix="wayport:")
    await limiter.reserve("acme", charges, now=time.time())

Each counter is one key, ``{prefix}limit:{tenant}:{charge key}``, holding ``used at``. A
reservation is an optimistic transaction: ``WATCH`` the keys, read them, decide with the
same pure functions the in-process limiter uses (``wayport.core.limits.take``), and write
them in ``MULTI``/``EXEC``; when another replica wrote one of them in between, ``EXEC`` fails
and the reservation runs again on what that replica left. So no limit is overshot by replicas
racing, and all charges move or none. Window counters expire with their window, rate counters
once they have drained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError, WatchError

from wayport.core.errors import StoreError
from wayport.core.limits import Charge, Counter, CounterKind, adjust, current, refusal, take

_ATTEMPTS = 64


class RedisLimiter:
    def __init__(self, url: str, *, prefix: str = "wayport:") -> None:
        self._client: Redis = Redis.from_url(url)
        self._prefix = prefix

    async def close(self) -> None:
        await self._client.aclose()

    async def reserve(self, tenant: str, charges: Sequence[Charge], *, now: float) -> None:
        if charges:
            await self._move(tenant, charges, [None] * len(charges), now)

    async def adjust(
        self, tenant: str, moves: Sequence[tuple[Charge, float]], *, now: float
    ) -> None:
        if moves:
            await self._move(tenant, [c for c, _ in moves], [d for _, d in moves], now)

    async def used(self, tenant: str, charge: Charge, *, now: float) -> float:
        try:
            raw = await self._client.get(self._key(tenant, charge))
        except RedisError as exc:
            raise StoreError(f"redis: cannot read a limit counter: {exc}") from exc
        return current(_parse(raw), charge, now)

    async def _move(
        self, tenant: str, charges: Sequence[Charge], deltas: Sequence[float | None], now: float
    ) -> None:
        """``None`` deltas reserve (and may refuse); numbers adjust."""
        keys = [self._key(tenant, c) for c in charges]
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                for _ in range(_ATTEMPTS):
                    try:
                        await pipe.watch(*keys)
                        found = [_parse(raw) for raw in await pipe.mget(keys)]
                        after: list[Counter] = []
                        for charge, counter, delta in zip(charges, found, deltas, strict=True):
                            if delta is not None:
                                after.append(adjust(counter, charge, delta, now))
                                continue
                            moved, wait = take(counter, charge, now)
                            if wait is not None:
                                await pipe.reset()  # type: ignore[no-untyped-call]
                                raise refusal(charge, counter, now)
                            after.append(moved)
                        pipe.multi()  # type: ignore[no-untyped-call]
                        for key, charge, counter in zip(keys, charges, after, strict=True):
                            pipe.set(
                                key,
                                f"{counter.used!r} {counter.at!r}",
                                ex=_ttl(charge, counter, now),
                            )
                        await pipe.execute()
                        return
                    except WatchError:
                        continue
        except RedisError as exc:
            raise StoreError(f"redis: cannot move a limit counter: {exc}") from exc
        raise StoreError("redis: a limit counter stayed contended; try again")

    def _key(self, tenant: str, charge: Charge) -> str:
        return f"{self._prefix}limit:{tenant}:{charge.key}"


def _parse(raw: bytes | str | None) -> Counter | None:
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    used, _, at = text.partition(" ")
    return Counter(float(used), float(at))


def _ttl(charge: Charge, counter: Counter, now: float) -> int | None:
    if charge.kind is CounterKind.WINDOW:
        return max(1, math.ceil(charge.expires - now) + 60)
    if charge.kind is CounterKind.RATE and charge.drain > 0:
        return math.ceil(counter.used / charge.drain) + 1  # drained to zero by then
    return None  # concurrency: released by settling, never by time
