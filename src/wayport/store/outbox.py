"""``WebhookOutbox`` on SQL: one row per run whose client asked for a completion webhook.

    outbox = SqlWebhookOutbox(db)
    await outbox.arm("default", run_id=run.id, url="https://example.com/hook", secret=None)
    for hook in await outbox.due("default", now=time.time(), lease=30):   # finished runs only
        ...  # POST it
        await outbox.delivered("default", hook.run_id, now=time.time())

The row is written with the run, before the client hears of it, so the webhook survives any
crash after that. ``due`` leases what it returns (moves ``next_attempt_at`` past the lease in
the same guarded ``UPDATE``), so two dispatchers never send the same attempt at once; a
delivered row never comes back. The event body is not stored (it is built from the run, whose
contents are sealed, when sent); with a ``sealer`` holding keys the run's own signing secret is
sealed at rest, and so is the last delivery error (a receiver's reply may echo the body).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from wayport.core.ids import new_id
from wayport.core.session import RunStatus
from wayport.core.webhooks import Webhook, WebhookState
from wayport.store.database import Database
from wayport.store.schema import runs as R
from wayport.store.schema import webhook_outbox as O
from wayport.store.scope import Scope, scoped_insert, scoped_select, scoped_update
from wayport.store.sealing import NO_SEALING, Sealer

SEALED_AS = "webhook_outbox.secret"  #: the sealing purpose (associated data)
ERROR_SEALED_AS = "webhook_outbox.last_error"

_ARMED = WebhookState.ARMED.value
_FINISHED = [s.value for s in RunStatus if s.finished]
_C = O.alias("candidate")

_GET = scoped_select(O).where(O.c.run_id == param("rid"))
_INSERT = scoped_insert(O)
_DUE = (
    scoped_update(O)
    .where(
        O.c.run_id.in_(
            sa.select(
                scoped_select(_C, _C.c.run_id)
                .select_from(
                    _C.join(R, sa.and_(R.c.tenant_id == _C.c.tenant_id, R.c.id == _C.c.run_id))
                )
                .where(
                    _C.c.state == _ARMED,
                    _C.c.next_attempt_at <= param("now"),
                    R.c.status.in_(_FINISHED),
                )
                .order_by(_C.c.next_attempt_at, _C.c.run_id)
                .limit(param("limit"))
                # concurrent passes (replicas) take the next rows instead of losing these
                .with_for_update(skip_locked=True, of=_C)
                .cte("due")
                .prefix_with("MATERIALIZED", dialect="postgresql")
                .c.run_id
            )
        ),
        # checked again: another dispatcher may have leased it since the pick
        O.c.state == _ARMED,
        O.c.next_attempt_at <= param("now"),
    )
    .values(next_attempt_at=param("until"))
    .returning(O)
)
_DELIVERED = (
    scoped_update(O)
    .where(O.c.run_id == param("rid"), O.c.state == _ARMED)
    .values(
        state=WebhookState.DELIVERED.value,
        attempts=O.c.attempts + 1,
        delivered_at=param("now"),
        last_error=None,
    )
)
_FAILED = (
    scoped_update(O)
    .where(O.c.run_id == param("rid"), O.c.state == _ARMED)
    .values(
        state=param("state"),
        attempts=O.c.attempts + 1,
        next_attempt_at=param("at"),
        last_error=param("error"),
    )
)


def _webhook(row: sa.Row[Any], sealer: Sealer = NO_SEALING) -> Webhook:
    return Webhook(
        tenant_id=row.tenant_id,
        run_id=row.run_id,
        event_id=row.event_id,
        url=row.url,
        secret=sealer.open_text(row.tenant_id, SEALED_AS, row.secret),
        state=WebhookState(row.state),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=sealer.open_text(row.tenant_id, ERROR_SEALED_AS, row.last_error),
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )


class SqlWebhookOutbox:
    def __init__(
        self, db: Database, *, now: Callable[[], float] = time.time, sealer: Sealer = NO_SEALING
    ) -> None:
        self._db = db
        self._now = now
        self._sealer = sealer

    async def arm(self, tenant: str, *, run_id: str, url: str, secret: str | None) -> None:
        scope, t = Scope(tenant), self._now()
        row = {
            "run_id": run_id,
            "event_id": new_id("evt"),
            "url": url,
            "secret": self._sealer.seal_text(tenant, SEALED_AS, secret),
            "state": _ARMED,
            "attempts": 0,
            "next_attempt_at": t,
            "created_at": t,
        }

        def job(conn: sa.Connection) -> None:
            if scope.execute(conn, _GET, {"rid": run_id}).first() is None:
                scope.execute(conn, _INSERT, row)

        await self._db.write(job)

    async def due(self, tenant: str, *, now: float, lease: float, limit: int = 50) -> list[Webhook]:
        scope = Scope(tenant)
        params = {"now": now, "until": now + lease, "limit": limit}
        return await self._db.write(
            lambda conn: sorted(
                (_webhook(r, self._sealer) for r in scope.execute(conn, _DUE, params)),
                key=lambda w: w.created_at,
            )
        )

    async def delivered(self, tenant: str, run_id: str, *, now: float) -> None:
        scope = Scope(tenant)
        await self._db.write(
            lambda conn: scope.execute(conn, _DELIVERED, {"rid": run_id, "now": now})
        )

    async def failed(self, tenant: str, run_id: str, *, error: str, retry_at: float | None) -> None:
        scope = Scope(tenant)
        state = WebhookState.ARMED if retry_at is not None else WebhookState.FAILED
        params = {
            "rid": run_id,
            "state": state.value,
            "at": retry_at if retry_at is not None else self._now(),
            "error": self._sealer.seal_text(tenant, ERROR_SEALED_AS, error[:2000]),
        }
        await self._db.write(lambda conn: scope.execute(conn, _FAILED, params))

    async def get(self, tenant: str, run_id: str) -> Webhook | None:
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> Webhook | None:
            row = scope.execute(conn, _GET, {"rid": run_id}).first()
            return None if row is None else _webhook(row, self._sealer)

        return await self._db.read(job)
