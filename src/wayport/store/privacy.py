"""What privacy requests need from the SQL store: a user's or a session's data found, exported
whole, and erased; sessions past their retention found.

    privacy = SqlPrivacyStore.of(store, sealer=sealer)  # store: an open SqlStore
    ids = await privacy.find_sessions("acme", user="u-42")
    data = await privacy.export("acme", ids, user="u-42")  # sessions, messages, runs, steps, usage
    await privacy.erase("acme", ids, user="u-42")

A session belongs to a user through ``metadata.user``. Erasing a session deletes it and,
through ``ON DELETE CASCADE``, its messages, archive, runs and steps; the user's usage-ledger
rows are deleted too (they name the user and the session). Channel messages go with them: the
inbox rows the user sent (``sender``, the platform's user id, is the subject's ``user``) or
that started a run of the sessions, the outbox rows answering those (their ids extend the
inbox row's id, ``<inbox id>:<part>``), and the user's pairing codes. The audit log is never
touched (the database refuses it; entries hold ids and hashes, not contents). Only
``tenants()`` reads across tenants (the sweeper needs the list); every other statement is
built by ``Scope``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from wayport.core.session import Run, RunStep, Session
from wayport.store.channels import IN_PAYLOAD, OUT_PAYLOAD, OUT_REASON
from wayport.store.database import Database
from wayport.store.rows import run_from_row, session_from_row, step_from_row
from wayport.store.schema import channel_inbox as IN
from wayport.store.schema import channel_outbox as OUT
from wayport.store.schema import channel_pairings as PA
from wayport.store.schema import run_steps as ST
from wayport.store.schema import runs as R
from wayport.store.schema import sessions as S
from wayport.store.schema import usage_ledger as U
from wayport.store.scope import Scope, scoped_delete, scoped_select
from wayport.store.sealing import NO_SEALING, Sealer
from wayport.store.sessions import SqlSessionStore
from wayport.store.sql import SqlStore

__all__ = ["Erased", "SqlPrivacyStore"]

_PAGE = 500
_IDS: sa.BindParameter[Any] = param("ids", expanding=True)
_BY_USER = scoped_select(S).where(S.c.metadata["user"].as_string() == param("user"))
_BY_IDS = scoped_select(S).where(S.c.id.in_(_IDS))
_RUNS = scoped_select(R).where(R.c.session_id.in_(_IDS)).order_by(R.c.created_at, R.c.id)
_STEPS = scoped_select(ST).where(ST.c.run_id.in_(_IDS)).order_by(ST.c.run_id, ST.c.step_no)
_USAGE = (
    scoped_select(U)
    .where(sa.or_(U.c.user_id == param("user"), U.c.session_id.in_(_IDS)))
    .order_by(U.c.at, U.c.id)
)
_DELETE_USAGE = scoped_delete(U).where(
    sa.or_(U.c.user_id == param("user"), U.c.session_id.in_(_IDS))
)
_DELETE_SESSIONS = scoped_delete(S).where(S.c.id.in_(_IDS))
_RUN_IDS = scoped_select(R, R.c.id).where(R.c.session_id.in_(_IDS))
_INBOX_BY_SENDER = scoped_select(IN).where(IN.c.sender == param("user"))
_INBOX_BY_RUNS = scoped_select(IN).where(IN.c.run_id.in_(_IDS))
# an outbox id is "<inbox id>:<part>": one pass over the tenant's outbox per inbox-id length
_OUTBOX_OF = scoped_select(OUT).where(
    sa.func.substr(OUT.c.id, 1, param("n", type_=sa.Integer)).in_(_IDS),
    sa.func.substr(OUT.c.id, param("colon", type_=sa.Integer), 1) == ":",
)
_PAIRINGS = scoped_select(PA).where(PA.c.sender == param("user"))
_DELETE_INBOX = scoped_delete(IN).where(IN.c.id.in_(_IDS))
_DELETE_OUTBOX = scoped_delete(OUT).where(OUT.c.id.in_(_IDS))
_DELETE_PAIRINGS = scoped_delete(PA).where(PA.c.sender == param("user"))
_EXPIRED = (
    scoped_select(S, S.c.id)
    .where(S.c.updated_at < param("before"))
    .order_by(S.c.updated_at, S.c.id)
    .limit(param("limit"))
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Erased:
    sessions: int
    usage_rows: int
    channel_messages: int = 0  #: inbox and outbox rows (pairing codes not counted)


@dataclass(frozen=True, slots=True)
class _Channel:
    inbox: list[sa.Row[Any]]
    outbox: list[sa.Row[Any]]
    pairings: list[sa.Row[Any]]


def _channel_rows(
    conn: sa.Connection, scope: Scope, run_ids: Sequence[str], user: str | None
) -> _Channel:
    """The channel rows of the user (as sender) and of the runs."""
    inbox: dict[str, sa.Row[Any]] = {}
    if user is not None:
        inbox.update((r.id, r) for r in scope.execute(conn, _INBOX_BY_SENDER, {"user": user}))
    if run_ids:
        inbox.update((r.id, r) for r in scope.execute(conn, _INBOX_BY_RUNS, {"ids": run_ids}))
    by_length: dict[int, list[str]] = {}
    for entry_id in inbox:
        by_length.setdefault(len(entry_id), []).append(entry_id)
    outbox: dict[str, sa.Row[Any]] = {}
    for n, ids in sorted(by_length.items()):
        params = {"n": n, "colon": n + 1, "ids": ids}
        outbox.update((r.id, r) for r in scope.execute(conn, _OUTBOX_OF, params))
    pairings = [] if user is None else list(scope.execute(conn, _PAIRINGS, {"user": user}))
    return _Channel(
        inbox=sorted(inbox.values(), key=lambda r: (r.received_at, r.id)),
        outbox=sorted(outbox.values(), key=lambda r: (r.created_at, r.id)),
        pairings=sorted(pairings, key=lambda r: (r.created_at, r.channel)),
    )


def _opened(row: sa.Row[Any], sealer: Sealer, purpose: str) -> dict[str, Any]:
    out = dict(row._mapping)
    tenant = out.pop("tenant_id")
    out["message"] = sealer.open(tenant, purpose, out.pop("payload"))
    if purpose == OUT_PAYLOAD:  # security: an outbox item's reason is sealed too
        out["reason"] = sealer.open_text(tenant, OUT_REASON, out["reason"])
    return out


class SqlPrivacyStore:
    def __init__(
        self, db: Database, sessions: SqlSessionStore, *, sealer: Sealer = NO_SEALING
    ) -> None:
        self._db = db
        self._sessions = sessions
        self._sealer = sealer

    @classmethod
    def of(cls, store: SqlStore, *, sealer: Sealer = NO_SEALING) -> SqlPrivacyStore:
        """On an open store; ``sealer``: the one the store was opened with."""
        return cls(store.db, store.sessions, sealer=sealer)

    async def find_sessions(
        self, tenant: str, *, user: str | None = None, session: str | None = None
    ) -> list[str]:
        """The ids of the user's sessions, or ``[session]`` when it exists; oldest first."""
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> list[str]:
            if user is not None:
                rows = scope.execute(conn, _BY_USER, {"user": user})
            else:
                rows = scope.execute(conn, _BY_IDS, {"ids": [session]})
            return [r.id for r in sorted(rows, key=lambda r: (r.created_at, r.id))]

        return await self._db.read(job)

    async def export(
        self, tenant: str, session_ids: Sequence[str], *, user: str | None = None
    ) -> dict[str, Any]:
        """Everything stored about these sessions (and the user's usage rows), as JSON-ready
        data; message contents come back opened (unsealed)."""
        scope, ids = Scope(tenant), list(session_ids)

        def job(
            conn: sa.Connection,
        ) -> tuple[list[Session], list[Run], list[RunStep], list[Any], _Channel]:
            sessions = [
                session_from_row(r, self._sealer)
                for r in scope.execute(conn, _BY_IDS, {"ids": ids})
            ]
            runs = [run_from_row(r, self._sealer) for r in scope.execute(conn, _RUNS, {"ids": ids})]
            run_ids = [r.id for r in runs]
            steps = [
                step_from_row(r, self._sealer)
                for r in scope.execute(conn, _STEPS, {"ids": run_ids})
            ]
            usage = [
                dict(r._mapping) for r in scope.execute(conn, _USAGE, {"ids": ids, "user": user})
            ]
            channel = _channel_rows(conn, scope, run_ids, user)
            return sessions, runs, steps, usage, channel

        sessions, runs, steps, usage, channel = await self._db.read(job)
        out_sessions = []
        for s in sorted(sessions, key=lambda s: (s.created_at, s.id)):
            history = await self._history(tenant, s.id)
            out_sessions.append({**asdict(s), "messages": history})
        out_runs = []
        for run in runs:
            own = [asdict(st) for st in steps if st.run_id == run.id]
            out_runs.append({**asdict(run), "status": run.status.value, "steps": own})
        for step in (s for r in out_runs for s in r["steps"]):
            step["kind"] = str(getattr(step["kind"], "value", step["kind"]))
        for row in usage:
            row.pop("tenant_id", None)
        pairings = [dict(r._mapping) for r in channel.pairings]
        for row in pairings:
            row.pop("tenant_id", None)
        return {
            "sessions": out_sessions,
            "runs": out_runs,
            "usage": usage,
            "channel_inbox": [_opened(r, self._sealer, IN_PAYLOAD) for r in channel.inbox],
            "channel_outbox": [_opened(r, self._sealer, OUT_PAYLOAD) for r in channel.outbox],
            "channel_pairings": pairings,
        }

    async def _history(self, tenant: str, session_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            page = await self._sessions.history(tenant, session_id, after=after, limit=_PAGE)
            out.extend(asdict(m) for m in page)
            if len(page) < _PAGE:
                return out
            after = page[-1].seq

    async def erase(
        self, tenant: str, session_ids: Sequence[str], *, user: str | None = None
    ) -> Erased:
        """Delete the sessions (cascading to everything they own), the usage rows that name
        them or the user, and their channel rows, in one transaction."""
        scope, ids = Scope(tenant), list(session_ids)

        def job(conn: sa.Connection) -> Erased:
            run_ids = [r.id for r in scope.execute(conn, _RUN_IDS, {"ids": ids})]
            channel = _channel_rows(conn, scope, run_ids, user)
            inbox = [r.id for r in channel.inbox]
            outbox = [r.id for r in channel.outbox]
            messages = scope.execute(conn, _DELETE_OUTBOX, {"ids": outbox}).rowcount
            messages += scope.execute(conn, _DELETE_INBOX, {"ids": inbox}).rowcount
            if user is not None:
                scope.execute(conn, _DELETE_PAIRINGS, {"user": user})
            usage = scope.execute(conn, _DELETE_USAGE, {"ids": ids, "user": user}).rowcount
            deleted = scope.execute(conn, _DELETE_SESSIONS, {"ids": ids}).rowcount
            return Erased(sessions=deleted, usage_rows=usage, channel_messages=messages)

        return await self._db.write(job)

    async def expired(self, tenant: str, *, before: float, limit: int = 500) -> list[str]:
        """Sessions not updated since ``before`` (epoch seconds), oldest first."""
        scope = Scope(tenant)
        params = {"before": before, "limit": limit}
        return await self._db.read(
            lambda conn: [r.id for r in scope.execute(conn, _EXPIRED, params)]
        )

    async def tenants(self) -> list[str]:
        stmt = sa.select(S.c.tenant_id).distinct().order_by(S.c.tenant_id)
        return await self._db.read(lambda conn: [str(r[0]) for r in conn.execute(stmt)])
