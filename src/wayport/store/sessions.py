"""``SessionStore`` on SQL: sessions, their history, and its compressed archive.

    store = SqlSessionStore(db)
    s = await store.create("default", agent="support")
    await store.append("default", s.id, [NewMessage(message={"role": "user", "content": "hi"})])
    await store.archive("default", s.id)  # history moves into one zstd blob …
    await store.history("default", s.id)  # … and still reads back the same

Appending allocates sequence numbers by bumping ``sessions.message_count`` in the transaction
that inserts the messages, so numbers have no gaps and, on Postgres, appenders to one session
take turns on that row's lock instead of colliding on the key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from wayport.core.errors import Conflict, InvalidRequest, NotFound
from wayport.core.ids import new_id
from wayport.core.session import UNSET, Json, NewMessage, Session, StoredMessage, Unset
from wayport.store import codec
from wayport.store.database import Database
from wayport.store.prepared import Prepared
from wayport.store.rows import message_from_row, message_row, session_from_row
from wayport.store.schema import messages as M
from wayport.store.schema import session_archive as A
from wayport.store.schema import sessions as S
from wayport.store.scope import Scope, scoped_delete, scoped_insert, scoped_select, scoped_update
from wayport.store.sealing import NO_SEALING, Sealer

_BY_ID = S.c.id == param("sid")
_GET = Prepared(scoped_select(S).where(_BY_ID))
_EXISTS = scoped_select(S, S.c.id).where(_BY_ID)
_INSERT = scoped_insert(S)
_DELETE = scoped_delete(S).where(_BY_ID)
_IDLE = (
    scoped_select(S)
    .where(S.c.updated_at < param("before"), S.c.message_count > S.c.archived_upto)
    .order_by(S.c.updated_at, S.c.id)
    .limit(param("limit"))
)
# recent(): newest first, keyset-paged on (updated_at, id); one statement per filter combination
_NEWER_FIRST = (S.c.updated_at.desc(), S.c.id.desc())
_BEFORE = (
    S.c.updated_at <= param("at"),
    sa.or_(S.c.updated_at < param("at"), S.c.id < param("before_id")),
)
_RECENT = {
    (paged, filtered): scoped_select(S)
    .where(*(_BEFORE if paged else ()), *((S.c.agent == param("agent"),) if filtered else ()))
    .order_by(*_NEWER_FIRST)
    .limit(param("limit"))
    for paged in (False, True)
    for filtered in (False, True)
}
_RESERVE = Prepared(
    scoped_update(S)
    .where(_BY_ID)
    .values(message_count=S.c.message_count + param("n"), updated_at=param("now"))
    .returning(S.c.message_count)
)
_SET_COUNT = scoped_update(S).where(_BY_ID).values(message_count=param("count"))
_KEYED = scoped_select(M).where(
    M.c.session_id == param("sid"), M.c.idempotency_key.in_(param("keys", expanding=True))
)
# one key (a turn's message): no expanding IN, whose rendering costs more than the lookup
_KEYED_ONE = Prepared(
    scoped_select(M).where(M.c.session_id == param("sid"), M.c.idempotency_key == param("key"))
)
_INSERT_MESSAGES = Prepared(scoped_insert(M))
_ARCHIVED_UPTO = scoped_select(S, S.c.archived_upto).where(_BY_ID)
_CHUNK = (
    scoped_select(A, A.c.last_seq, A.c.codec, A.c.data)
    .where(A.c.session_id == param("sid"), A.c.last_seq > param("after"))
    .order_by(A.c.first_seq)
    .limit(1)
)
_HOT = (
    scoped_select(M)
    .where(M.c.session_id == param("sid"), M.c.seq > param("after"))
    .order_by(M.c.seq)
    .limit(param("limit"))
)
_COUNTS = scoped_select(S, S.c.message_count, S.c.archived_upto).where(_BY_ID)
_RANGE = M.c.session_id == param("sid"), M.c.seq >= param("first"), M.c.seq <= param("last")
_COLD = scoped_select(M).where(*_RANGE).order_by(M.c.seq)
_DELETE_RANGE = scoped_delete(M).where(*_RANGE)
_MARK_ARCHIVED = (
    scoped_update(S)
    .where(_BY_ID, S.c.archived_upto == param("upto"))
    .values(archived_upto=param("last"))
    .returning(S.c.id)
)
_INSERT_ARCHIVE = scoped_insert(A)


class SqlSessionStore:
    def __init__(
        self, db: Database, *, now: Callable[[], float] = time.time, sealer: Sealer = NO_SEALING
    ) -> None:
        self._db = db
        self._now = now
        self._sealer = sealer  #: encryption at rest (``wayport.store.sealing``)

    async def create(
        self,
        tenant: str,
        *,
        agent: str,
        agent_version: str = "",
        metadata: Mapping[str, Json] | None = None,
        session_id: str | None = None,
    ) -> Session:
        scope, t = Scope(tenant), self._now()
        session = Session(
            id=session_id or new_id("sess"),
            tenant_id=tenant,
            agent=agent,
            agent_version=agent_version,
            created_at=t,
            updated_at=t,
            metadata=dict(metadata or {}),
        )
        row = {
            "id": session.id,
            "agent": agent,
            "agent_version": agent_version,
            "created_at": t,
            "updated_at": t,
            "metadata": session.metadata,
            "pinned": [],
        }

        def job(conn: sa.Connection) -> None:
            scope.execute(conn, _INSERT, row)

        try:
            await self._db.write(job)
        except Conflict as exc:
            raise Conflict(f"session {session.id} already exists") from exc
        return session

    async def get(self, tenant: str, session_id: str) -> Session | None:
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> Session | None:
            row = _GET.first(scope, conn, {"sid": session_id})
            return None if row is None else session_from_row(row, self._sealer)

        return await self._db.read(job)

    async def update(
        self,
        tenant: str,
        session_id: str,
        *,
        agent_version: str | Unset = UNSET,
        summary: str | Unset | None = UNSET,
        pinned: Sequence[str] | Unset = UNSET,
        metadata: Mapping[str, Json] | Unset = UNSET,
    ) -> Session:
        values: dict[str, Any] = {"updated_at": self._now()}
        if agent_version is not UNSET:
            values["agent_version"] = agent_version
        if summary is not UNSET:
            values["summary"] = self._sealer.seal_text(tenant, "sessions.summary", summary)
        if pinned is not UNSET:
            values["pinned"] = list(pinned)
        if metadata is not UNSET:
            values["metadata"] = dict(metadata)
        # which columns change varies per call: not worth a statement per combination
        stmt = scoped_update(S).where(_BY_ID).values(values).returning(S)
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> Session:
            row = scope.execute(conn, stmt, {"sid": session_id}).first()
            if row is None:
                raise _missing(session_id)
            return session_from_row(row, self._sealer)

        return await self._db.write(job)

    async def delete(self, tenant: str, session_id: str) -> None:
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> None:
            # messages, archive, runs and run steps go with it: ON DELETE CASCADE (schema.py)
            if scope.execute(conn, _DELETE, {"sid": session_id}).rowcount == 0:
                raise _missing(session_id)

        await self._db.write(job)

    async def append(
        self, tenant: str, session_id: str, messages: Sequence[NewMessage]
    ) -> list[StoredMessage]:
        scope, now, sealer = Scope(tenant), self._now(), self._sealer
        return await self._db.write(
            lambda conn: append_messages(conn, scope, session_id, messages, now=now, sealer=sealer)
        )

    async def history(
        self, tenant: str, session_id: str, *, after: int = 0, limit: int = 100
    ) -> list[StoredMessage]:
        if limit < 1 or after < 0:
            raise ValueError(f"history needs limit >= 1 and after >= 0, not {limit}, {after}")
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> list[StoredMessage]:
            archived_upto = scope.execute(conn, _ARCHIVED_UPTO, {"sid": session_id}).scalar()
            if archived_upto is None:
                raise _missing(session_id)
            out: list[StoredMessage] = []
            cursor = after
            while cursor < archived_upto and len(out) < limit:
                # one blob at a time: a page rarely needs more than the first
                chunk = scope.execute(conn, _CHUNK, {"sid": session_id, "after": cursor}).first()
                if chunk is None:
                    break
                data = self._sealer.open_bytes(tenant, "session_archive.data", chunk.data)
                archived = codec.decode_history(chunk.codec, data, session_id=session_id)
                out.extend(m for m in archived if m.seq > cursor)
                cursor = chunk.last_seq
            del out[limit:]
            if len(out) < limit:
                params = {"sid": session_id, "after": cursor, "limit": limit - len(out)}
                rows = scope.execute(conn, _HOT, params)
                out.extend(message_from_row(r, self._sealer) for r in rows)
            return out

        return await self._db.read(job)

    async def archive(self, tenant: str, session_id: str, *, keep_last: int = 0) -> int:
        if keep_last < 0:
            raise ValueError(f"keep_last must be >= 0, not {keep_last}")
        scope = Scope(tenant)

        def collect(conn: sa.Connection) -> tuple[int, list[StoredMessage]]:
            counts = scope.execute(conn, _COUNTS, {"sid": session_id}).first()
            if counts is None:
                raise _missing(session_id)
            upto, last = counts.archived_upto, counts.message_count - keep_last
            params = {"sid": session_id, "first": upto + 1, "last": last}
            rows = scope.execute(conn, _COLD, params)
            return upto, [message_from_row(r, self._sealer) for r in rows]

        upto, cold = await self._db.read(collect)
        if not cold:
            return 0
        # compress outside the writer: it is CPU work the other writers need not wait for
        blob = await asyncio.to_thread(codec.encode_history, cold)
        blob = self._sealer.seal_bytes(tenant, "session_archive.data", blob)
        first, last = cold[0].seq, cold[-1].seq
        archive_row = {
            "session_id": session_id,
            "first_seq": first,
            "last_seq": last,
            "message_count": len(cold),
            "codec": codec.CODEC,
            "data": blob,
            "created_at": self._now(),
        }

        def move(conn: sa.Connection) -> None:
            # optimistic: nobody archived this session since ``collect`` looked at it
            params = {"sid": session_id, "upto": upto, "last": last}
            if scope.execute(conn, _MARK_ARCHIVED, params).first() is None:
                if scope.execute(conn, _EXISTS, {"sid": session_id}).first() is None:
                    raise _missing(session_id)
                raise Conflict(f"session {session_id} was archived concurrently; try again")
            scope.execute(conn, _INSERT_ARCHIVE, archive_row)
            scope.execute(conn, _DELETE_RANGE, {"sid": session_id, "first": first, "last": last})

        await self._db.write(move)
        return len(cold)

    async def idle(self, tenant: str, *, updated_before: float, limit: int = 100) -> list[Session]:
        scope = Scope(tenant)
        params = {"before": updated_before, "limit": limit}
        return await self._db.read(
            lambda conn: [
                session_from_row(r, self._sealer) for r in scope.execute(conn, _IDLE, params)
            ]
        )

    async def recent(
        self,
        tenant: str,
        *,
        limit: int = 50,
        before: tuple[float, str] | None = None,
        agent: str | None = None,
    ) -> list[Session]:
        scope = Scope(tenant)
        if limit < 1:
            raise InvalidRequest("limit must be at least 1", param="limit")
        statement = _RECENT[(before is not None, agent is not None)]
        params: dict[str, Any] = {"limit": limit}
        if agent is not None:
            params["agent"] = agent
        if before is not None:
            params["at"], params["before_id"] = before
        return await self._db.read(
            lambda conn: [
                session_from_row(r, self._sealer) for r in scope.execute(conn, statement, params)
            ]
        )


def append_messages(
    conn: sa.Connection,
    scope: Scope,
    session_id: str,
    new: Sequence[NewMessage],
    *,
    now: float,
    run_id: str | None = None,
    step_no: int | None = None,
    sealer: Sealer = NO_SEALING,
    tags: Sequence[tuple[str | None, int | None]] | None = None,
) -> list[StoredMessage]:
    """Append inside the caller's transaction (``RunStore.record_step`` shares it). Raises
    ``NotFound`` for a session missing in this tenant. ``tags`` gives each message its own
    ``(run_id, step_no)`` (one append for a run's input and its step, as ``checkpoint`` does)."""
    reserve = {"sid": session_id, "n": len(new), "now": now}
    top = _RESERVE.scalar(scope, conn, reserve)
    if top is None:
        raise _missing(session_id)
    keys = [m.idempotency_key for m in new if m.idempotency_key is not None]
    seen: dict[str, StoredMessage] = {}
    if len(keys) == 1:
        found = _KEYED_ONE.all(scope, conn, {"sid": session_id, "key": keys[0]})
        seen = {row.idempotency_key: message_from_row(row, sealer) for row in found}
    elif keys:
        rows = scope.execute(conn, _KEYED, {"sid": session_id, "keys": keys})
        seen = {row.idempotency_key: message_from_row(row, sealer) for row in rows}
    out: list[StoredMessage] = []
    fresh: list[dict[str, Any]] = []
    seq = top - len(new)
    for i, item in enumerate(new):
        key = item.idempotency_key
        if key is not None and key in seen:
            out.append(seen[key])
            continue
        seq += 1
        rid, sno = tags[i] if tags is not None else (run_id, step_no)
        stored = _stored(item, session_id, seq, now, rid, sno)
        if key is not None:
            seen[key] = stored  # the same key twice in one call is one message too
        out.append(stored)
        fresh.append(message_row(stored, sealer, scope.tenant))
    if seq != top:
        # some were retries: hand back the numbers reserved for them (the row is still ours)
        scope.execute(conn, _SET_COUNT, {"sid": session_id, "count": seq})
    if fresh:
        _INSERT_MESSAGES.execute_many(scope, conn, fresh)
    return out


def _stored(
    item: NewMessage,
    session_id: str,
    seq: int,
    now: float,
    run_id: str | None,
    step_no: int | None,
) -> StoredMessage:
    msg = item.message
    return StoredMessage(
        session_id=session_id,
        seq=seq,
        role=msg["role"],
        content=msg.get("content"),
        name=msg.get("name"),
        tool_calls=tuple(msg.get("tool_calls") or ()),
        tool_call_id=msg.get("tool_call_id"),
        tokens=item.tokens,
        created_at=now,
        run_id=run_id,
        step_no=step_no,
        idempotency_key=item.idempotency_key,
    )


def _missing(session_id: str) -> NotFound:
    return NotFound(f"session {session_id} not found", param="session_id")
