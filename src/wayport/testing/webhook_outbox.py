"""An in-memory ``WebhookOutbox`` (run completion webhooks), passing the same contract suite as
``wayport.store.outbox.SqlWebhookOutbox``::

    outbox = MemoryWebhookOutbox(runs=stores.runs, now=clock.now)
    await outbox.arm("default", run_id=run.id, url="https://example.com/hook", secret=None)
    due = await outbox.due("default", now=clock.now(), lease=30)   # finished runs only

It reads run statuses through the ``RunStore`` port, as the SQL outbox joins the runs table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from wayport.core.ids import new_id
from wayport.core.webhooks import Webhook, WebhookState
from wayport.ports import RunStore, WebhookOutbox
from wayport.store.scope import Scope

__all__ = ["MemoryWebhookOutbox"]

_ARMED = WebhookState.ARMED


class MemoryWebhookOutbox:
    def __init__(self, *, runs: RunStore, now: Callable[[], float] = time.time) -> None:
        self._runs = runs
        self._now = now
        self._rows: dict[tuple[str, str], Webhook] = {}

    async def arm(self, tenant: str, *, run_id: str, url: str, secret: str | None) -> None:
        key = (Scope(tenant).tenant, run_id)
        if key in self._rows:
            return
        t = self._now()
        self._rows[key] = Webhook(
            tenant_id=tenant,
            run_id=run_id,
            event_id=new_id("evt"),
            url=url,
            secret=secret,
            next_attempt_at=t,
            created_at=t,
        )

    async def due(self, tenant: str, *, now: float, lease: float, limit: int = 50) -> list[Webhook]:
        tenant = Scope(tenant).tenant
        waiting = sorted(
            (w for (t, _), w in self._rows.items() if t == tenant and _is_due(w, now)),
            key=lambda w: (w.next_attempt_at, w.run_id),
        )
        picked: list[str] = []
        for hook in waiting:
            if len(picked) == limit:
                break
            run = await self._runs.get(tenant, hook.run_id)
            if run is not None and run.status.finished:
                picked.append(hook.run_id)
        leased = []
        for run_id in picked:  # checked again: another caller may have leased it meanwhile
            found = self._rows.get((tenant, run_id))
            if found is not None and _is_due(found, now):
                hook = self._rows[(tenant, run_id)] = replace(found, next_attempt_at=now + lease)
                leased.append(hook)
        return sorted(leased, key=lambda w: w.created_at)

    async def delivered(self, tenant: str, run_id: str, *, now: float) -> None:
        key = (Scope(tenant).tenant, run_id)
        hook = self._rows.get(key)
        if hook is not None and hook.state is _ARMED:
            self._rows[key] = replace(
                hook,
                state=WebhookState.DELIVERED,
                attempts=hook.attempts + 1,
                delivered_at=now,
                last_error=None,
            )

    async def failed(self, tenant: str, run_id: str, *, error: str, retry_at: float | None) -> None:
        key = (Scope(tenant).tenant, run_id)
        hook = self._rows.get(key)
        if hook is not None and hook.state is _ARMED:
            self._rows[key] = replace(
                hook,
                state=_ARMED if retry_at is not None else WebhookState.FAILED,
                attempts=hook.attempts + 1,
                next_attempt_at=retry_at if retry_at is not None else self._now(),
                last_error=error[:2000],
            )

    async def get(self, tenant: str, run_id: str) -> Webhook | None:
        return self._rows.get((Scope(tenant).tenant, run_id))


def _is_due(hook: Webhook, now: float) -> bool:
    return hook.state is _ARMED and hook.next_attempt_at <= now


def _implements_port(outbox: MemoryWebhookOutbox) -> WebhookOutbox:
    """Never called: type checkers verify here that the memory outbox implements the port."""
    return outbox
