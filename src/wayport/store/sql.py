"""The SQL stores opened together on one database.

async with await open_store("sqlite:///.wayport/wayport.db") as store:
    s = await store.sessions.create("default", agent="support")
    run = await store.runs.create("default", session_id=s.id)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from wayport.ports import RunStore, SessionStore
from wayport.store.database import Database
from wayport.store.engine import open_database
from wayport.store.runs import SqlRunStore
from wayport.store.sessions import SqlSessionStore


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlStore:
    db: Database
    sessions: SqlSessionStore
    runs: SqlRunStore

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
) -> SqlStore:
    """Open (and migrate) the database at ``url`` (default: SQLite under ``state_dir``).
    ``now`` is the wall clock stamped on rows; tests pass a manual one."""
    db = await open_database(url, state_dir=state_dir, now=now)
    return SqlStore(db=db, sessions=SqlSessionStore(db, now=now), runs=SqlRunStore(db, now=now))


def _implements_ports(store: SqlStore) -> tuple[SessionStore, RunStore]:
    """Never called: type checkers verify here that the SQL stores implement the ports."""
    return store.sessions, store.runs
