"""The channel outbox's dispatcher: replies leave in order per conversation, failures are
retried with exponential backoff, what is too old or failed for good is dropped with the reason
recorded. Also sweeps the expired replay nonces now and then.

    dispatcher = OutboxDispatcher(channels=specs, store=lambda: store, policy=OutboxPolicy())
    await dispatcher.dispatch()                    # one pass; how many items settled
    task = asyncio.create_task(dispatcher.run())   # or keep passing, woken by ``wake()``
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import structlog

from wayport.core.channels import OutboxItem, OutboxStatus, backoff
from wayport.core.errors import BackendError, WayportError
from wayport.ports import ChannelStore, Clock

if TYPE_CHECKING:
    from wayport.service.channels import ChannelSpec

_log = structlog.get_logger("wayport.channels")


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxPolicy:
    max_age: float = 24 * 3600.0  #: seconds; older pending replies are dropped
    max_attempts: int = 12
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    idle_poll: float = 1.0  #: seconds between looks at the outbox when nothing wakes it
    sweep_every: float = 60.0  #: seconds between sweeps of expired replay nonces


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class OutboxDispatcher:
    def __init__(
        self,
        *,
        channels: Mapping[str, ChannelSpec],
        store: Callable[[], ChannelStore],
        policy: OutboxPolicy,
        now: Callable[[], float],
        clock: Clock,
    ) -> None:
        self._channels = channels
        self._store = store
        self.policy = policy
        self._now = now
        self._clock = clock
        self._event = asyncio.Event()
        self._swept_at: float | None = None

    def wake(self) -> None:
        self._event.set()

    def _tenants(self) -> Iterable[str]:
        return {c.tenant for c in self._channels.values()}

    async def dispatch(self) -> int:
        """One pass over the outbox: the oldest pending item of each conversation is sent if
        due, dropped if too old; a conversation waiting on its platform holds back only its own
        replies. Returns how many items were settled."""
        settled = 0
        store = self._store()
        for tenant in self._tenants():
            heads = await store.heads(tenant)
            results = await asyncio.gather(*(self._deliver(tenant, i) for i in heads))
            settled += sum(results)
        return settled

    async def sweep(self) -> int:
        """Delete the expired replay nonces of every tenant; how many."""
        store, now = self._store(), self._now()
        return sum([await store.sweep_nonces(t, now=now) for t in self._tenants()])

    async def _deliver(self, tenant: str, item: OutboxItem) -> bool:
        now, policy, store = self._now(), self.policy, self._store()
        spec = self._channels.get(item.channel)
        if now - item.created_at > policy.max_age:
            return await self._settle(tenant, item, OutboxStatus.DROPPED, reason="expired")
        if spec is None:
            return await self._settle(tenant, item, OutboxStatus.DROPPED, reason="no such channel")
        if item.next_attempt_at > now:
            return False
        attempts = item.attempts + 1
        try:
            delivered = await spec.adapter.send(replace(item.message, key=item.id))
        except BackendError as exc:
            if not exc.retriable or attempts >= policy.max_attempts:
                return await self._settle(tenant, item, OutboxStatus.DROPPED, attempts, exc.message)
            wait = max(
                backoff(attempts, base=policy.backoff_base, cap=policy.backoff_cap),
                exc.retry_after or 0,
            )
            await store.settle(
                tenant,
                item.id,
                OutboxStatus.PENDING,
                attempts=attempts,
                next_attempt_at=now + wait,
                reason=exc.message,
            )
            return False
        except WayportError as exc:  # refused outright (SSRF guard, bad target): never retried
            return await self._settle(tenant, item, OutboxStatus.DROPPED, attempts, exc.message)
        await store.settle(
            tenant,
            item.id,
            OutboxStatus.DELIVERED,
            attempts=attempts,
            platform_id=delivered.platform_id,
        )
        return True

    async def _settle(
        self,
        tenant: str,
        item: OutboxItem,
        status: OutboxStatus,
        attempts: int | None = None,
        reason: str | None = None,
    ) -> bool:
        attempts = item.attempts if attempts is None else attempts
        _log.warning("outbound message dropped", channel=item.channel, item=item.id, reason=reason)
        await self._store().settle(tenant, item.id, status, attempts=attempts, reason=reason)
        return True

    async def run(self) -> None:
        """Pass over the outbox until cancelled: when woken, else every ``idle_poll``."""
        while True:
            self._event.clear()
            try:
                while await self.dispatch():
                    pass  # an item settled: the next of its conversation may be due now
                now = self._clock.now()
                if self._swept_at is None or now - self._swept_at >= self.policy.sweep_every:
                    self._swept_at = now
                    await self.sweep()
            except WayportError as exc:
                _log.warning("outbox pass failed", error=exc.message)
            sleeper = asyncio.ensure_future(self._clock.sleep(self.policy.idle_poll))
            waker = asyncio.ensure_future(self._event.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()
