"""A session's queue as every replica sees it: its unfinished runs in the store. What
``wayport.service.cluster.Cluster.admit`` counts when replicas share one database::

    ids = await pending_runs(stores, "acme", session_id, 18)   # oldest first
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from wayport.core.session import UNFINISHED
from wayport.store.schema import runs as R
from wayport.store.scope import Scope, scoped_select
from wayport.store.sql import SqlStore

_PENDING = (
    scoped_select(R, R.c.id)
    .where(
        R.c.session_id == param("sid"),
        R.c.status.in_(sorted(s.value for s in UNFINISHED)),
    )
    .order_by(R.c.created_at, R.c.id)
    .limit(param("limit"))
)


async def pending_runs(stores: object, tenant: str, session_id: str, limit: int) -> list[str]:
    """Ids of the session's runs not finished yet (queued, running, waiting for approval),
    oldest first, at most ``limit``; none for a store other than SQL."""
    if not isinstance(stores, SqlStore):
        return []
    scope = Scope(tenant)
    params: dict[str, Any] = {"sid": session_id, "limit": limit}

    def job(conn: sa.Connection) -> list[str]:
        return [row.id for row in scope.execute(conn, _PENDING, params)]

    return await stores.db.read(job)
