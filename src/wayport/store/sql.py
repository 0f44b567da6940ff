"""The SQL stores opened together on one database.

async with await open_store("sqlite:///.wayport/wayport.db") as store:
    s = await store.sessions.create("default", agent="support")
    run = await store.runs.create("default", session_id=s.id)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from wayport.ports import RunStore, SessionStore
from wayport.store.audit import SqlAuditStore
from wayport.store.database import Database
from wayport.store.engine import open_database
from wayport.store.keys import SqlKeyStore
from wayport.store.runs import SqlRunStore
from wayport.store.sealing import NO_SEALING, Sealer
from wayport.store.sessions import SqlSessionStore
from wayport.store.tenants import SqlTenantStore


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlStore:
    db: Database
    sessions: SqlSessionStore
    runs: SqlRunStore
    # BEGIN security: keys, tenants and the audit log on the same database
    keys: SqlKeyStore = field(init=False)
    tenants: SqlTenantStore = field(init=False)
    audit: SqlAuditStore = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", SqlKeyStore(self.db))
        object.__setattr__(self, "tenants", SqlTenantStore(self.db))
        object.__setattr__(self, "audit", SqlAuditStore(self.db))

    # END security

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> SqlStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def open_store(
    url: str | None = None,
    *,
    state_dir: Path = Path(".wayport"),
    now: Callable[[], float] = time.time,
    sealer: Sealer = NO_SEALING,
) -> SqlStore:
    """Open (and migrate) the database at ``url`` (default: SQLite under ``state_dir``).
    ``now`` is the wall clock stamped on rows; tests pass a manual one. ``sealer`` encrypts
    contents at rest (``wayport.store.sealing``)."""
    db = await open_database(url, state_dir=state_dir, now=now)
    return SqlStore(
        db=db,
        sessions=SqlSessionStore(db, now=now, sealer=sealer),
        runs=SqlRunStore(db, now=now, sealer=sealer),
    )


def _implements_ports(store: SqlStore) -> tuple[SessionStore, RunStore]:
    """Never called: type checkers verify here that the SQL stores implement the ports."""
    return store.sessions, store.runs
