"""The ``Limiter`` on SQL: counters that survive restarts and are shared by every process on
the database (spend budgets, above all).

A reservation is one transaction: for each charge, make sure the counter's row exists, then

    UPDATE limit_counters SET used = <now_used> + :amount, updated_at = :now
    WHERE tenant_id = :tenant AND key = :key AND <now_used> + :amount <= :limit

where ``<now_used>`` is the counter drained to ``:now`` (rate counters drain; the others have
``:drain = 0``). The database evaluates the condition on the row it locks, so concurrent
reservations queue on the row and each sees what the previous one left: a budget cannot be
overspent by racing. A charge that does not fit raises inside the transaction, which rolls
back the charges before it: all or nothing.

    limiter = SqlLimiter(db)
    await limiter.reserve("acme", charges, now=time.time())
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param
from sqlalchemy.dialects import postgresql, sqlite

from wayport.core.limits import Charge, Counter, CounterKind, current, refusal
from wayport.store.database import Database
from wayport.store.schema import limit_counters as LC
from wayport.store.scope import TENANT, Scope, scoped_select, scoped_update

_BY_KEY = LC.c.key == param("ckey")


def _drained() -> sa.ColumnElement[float]:
    elapsed = param("now", type_=sa.Double) - LC.c.updated_at
    # another process's clock may be a little behind: time never runs backwards here
    elapsed = sa.case((elapsed < 0, sa.literal(0.0, sa.Double)), else_=elapsed)
    drained = LC.c.used - elapsed * param("drain", type_=sa.Double)
    return sa.case((drained < 0, sa.literal(0.0, sa.Double)), else_=drained)


def _ensure(dialect: Any) -> sa.Insert:
    insert = dialect.insert(LC).values(
        tenant_id=param(TENANT, type_=sa.String(), required=True),
        key=param("ckey"),
        used=0.0,
        updated_at=param("now"),
        expires_at=param("expires"),
    )
    ensured: sa.Insert = insert.on_conflict_do_nothing(index_elements=[LC.c.tenant_id, LC.c.key])
    return ensured


_ENSURE = {"sqlite": _ensure(sqlite), "postgresql": _ensure(postgresql)}
_TAKE = (
    scoped_update(LC)
    .where(_BY_KEY, _drained() + param("amount", type_=sa.Double) <= param("limit"))
    .values(used=_drained() + param("amount", type_=sa.Double), updated_at=param("now"))
)
_MOVE = (
    scoped_update(LC)
    .where(_BY_KEY)
    .values(
        used=sa.case(
            (_drained() + param("delta", type_=sa.Double) < 0, sa.literal(0.0, sa.Double)),
            else_=_drained() + param("delta", type_=sa.Double),
        ),
        updated_at=param("now"),
    )
)
_GET = scoped_select(LC, LC.c.used, LC.c.updated_at).where(_BY_KEY)


def _params(charge: Charge, now: float) -> dict[str, Any]:
    return {
        "ckey": charge.key,
        "now": now,
        "drain": charge.drain,
        "expires": charge.expires if charge.kind is CounterKind.WINDOW else None,
    }


class SqlLimiter:
    def __init__(self, db: Database | Callable[[], Database]) -> None:
        """``db``: the database, or a function that finds it when it is needed (the
        agents' store, opened at start)."""
        self._find = db if callable(db) else (lambda: db)

    @property
    def _db(self) -> Database:
        return self._find()

    async def reserve(self, tenant: str, charges: Sequence[Charge], *, now: float) -> None:
        if not charges:
            return
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> None:
            ensure = _ENSURE[conn.dialect.name]
            for charge in charges:
                p = _params(charge, now)
                scope.execute(conn, ensure, p)
                taken = scope.execute(
                    conn, _TAKE, {**p, "amount": charge.amount, "limit": charge.limit}
                )
                if taken.rowcount != 1:
                    row = scope.execute(conn, _GET, p).first()
                    counter = Counter(row.used, row.updated_at) if row is not None else None
                    raise refusal(charge, counter, now)  # rolls back the charges before it

        await self._db.write(job)

    async def adjust(
        self, tenant: str, moves: Sequence[tuple[Charge, float]], *, now: float
    ) -> None:
        if not moves:
            return
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> None:
            ensure = _ENSURE[conn.dialect.name]
            for charge, delta in moves:
                p = _params(charge, now)
                scope.execute(conn, ensure, p)
                scope.execute(conn, _MOVE, {**p, "delta": delta})

        await self._db.write(job)

    async def used(self, tenant: str, charge: Charge, *, now: float) -> float:
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> float:
            row = scope.execute(conn, _GET, {"ckey": charge.key}).first()
            counter = Counter(row.used, row.updated_at) if row is not None else None
            return current(counter, charge, now)

        return await self._db.read(job)
