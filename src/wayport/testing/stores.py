"""In-memory ``SessionStore`` and ``RunStore``, and scratch Postgres databases for tests.

    stores = MemoryStores(now=clock.now)
    s = await stores.sessions.create("default", agent="support")
    run = await stores.runs.create("default", session_id=s.id)

The memory stores pass the same contract suite (``tests/contract``) as the SQL ones: tenant
scoping, idempotency, all-or-nothing writes, the run status machine. Values are copied through
JSON on the way in, so a test that mutates what it stored, or stores what JSON cannot hold,
sees what a database would show it. Nothing survives the process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec

from wayport.core.errors import Conflict, InvalidRequest, NotFound
from wayport.core.ids import new_id
from wayport.core.session import (
    UNFINISHED,
    UNSET,
    Json,
    NewMessage,
    Run,
    RunStatus,
    RunStep,
    Session,
    StepKind,
    StepRecord,
    StoredMessage,
    Unset,
    leaving_for,
)
from wayport.ports import RunStore, SessionStore
from wayport.store.scope import Scope

T = TypeVar("T")
Key = tuple[str, str]  # (tenant, id): ids are unique per tenant, as in the SQL schema


@dataclass(slots=True)
class _State:
    sessions: dict[Key, Session] = field(default_factory=dict)
    history: dict[Key, list[StoredMessage]] = field(default_factory=dict)
    archived_upto: dict[Key, int] = field(default_factory=dict)
    runs: dict[Key, Run] = field(default_factory=dict)
    steps: dict[Key, dict[int, RunStep]] = field(default_factory=dict)


class MemoryStores:
    """A session store and a run store sharing one in-memory state."""

    def __init__(self, *, now: Callable[[], float] = time.time) -> None:
        state = _State()
        self.sessions = MemorySessionStore(state, now)
        self.runs = MemoryRunStore(state, now)

    async def close(self) -> None:
        """Nothing to release; here so tests treat every store alike."""


class MemorySessionStore:
    def __init__(self, state: _State, now: Callable[[], float]) -> None:
        self._s = state
        self._now = now

    async def create(
        self,
        tenant: str,
        *,
        agent: str,
        agent_version: str = "",
        metadata: Mapping[str, Json] | None = None,
        session_id: str | None = None,
    ) -> Session:
        key = _key(tenant, session_id or new_id("sess"))
        if key in self._s.sessions:
            raise Conflict(f"session {key[1]} already exists")
        t = self._now()
        session = Session(
            id=key[1],
            tenant_id=tenant,
            agent=agent,
            agent_version=agent_version,
            created_at=t,
            updated_at=t,
            metadata=_json(dict(metadata or {})),
        )
        self._s.sessions[key] = session
        self._s.history[key] = []
        self._s.archived_upto[key] = 0
        return session

    async def get(self, tenant: str, session_id: str) -> Session | None:
        return self._s.sessions.get(_key(tenant, session_id))

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
        key = _key(tenant, session_id)
        session = _session(self._s, key)
        session = replace(
            session,
            updated_at=self._now(),
            agent_version=session.agent_version if agent_version is UNSET else agent_version,
            summary=session.summary if summary is UNSET else summary,
            pinned=session.pinned if pinned is UNSET else tuple(pinned),
            metadata=session.metadata if metadata is UNSET else _json(dict(metadata)),
        )
        self._s.sessions[key] = session
        return session

    async def delete(self, tenant: str, session_id: str) -> None:
        key = _key(tenant, session_id)
        _session(self._s, key)
        del self._s.sessions[key], self._s.history[key], self._s.archived_upto[key]
        for run_key in [k for k, r in self._s.runs.items() if (k[0], r.session_id) == key]:
            del self._s.runs[run_key]
            self._s.steps.pop(run_key, None)

    async def append(
        self, tenant: str, session_id: str, messages: Sequence[NewMessage]
    ) -> list[StoredMessage]:
        return _append(self._s, _key(tenant, session_id), messages, self._now())

    async def history(
        self, tenant: str, session_id: str, *, after: int = 0, limit: int = 100
    ) -> list[StoredMessage]:
        if limit < 1 or after < 0:
            raise ValueError(f"history needs limit >= 1 and after >= 0, not {limit}, {after}")
        key = _key(tenant, session_id)
        _session(self._s, key)
        return [m for m in self._s.history[key] if m.seq > after][:limit]

    async def archive(self, tenant: str, session_id: str, *, keep_last: int = 0) -> int:
        if keep_last < 0:
            raise ValueError(f"keep_last must be >= 0, not {keep_last}")
        key = _key(tenant, session_id)
        session = _session(self._s, key)
        upto = self._s.archived_upto[key]
        last = session.message_count - keep_last
        if last <= upto:
            return 0
        self._s.archived_upto[key] = last
        self._s.sessions[key] = replace(session, cold=True)
        return last - upto

    async def idle(self, tenant: str, *, updated_before: float, limit: int = 100) -> list[Session]:
        _tenant(tenant)
        found = [
            s
            for (t, sid), s in self._s.sessions.items()
            if t == tenant
            and s.updated_at < updated_before
            and s.message_count > self._s.archived_upto[(t, sid)]
        ]
        return sorted(found, key=lambda s: (s.updated_at, s.id))[:limit]


class MemoryRunStore:
    def __init__(self, state: _State, now: Callable[[], float]) -> None:
        self._s = state
        self._now = now

    async def create(
        self,
        tenant: str,
        *,
        session_id: str,
        input: Json = None,
        agent_version: str = "",
        run_id: str | None = None,
    ) -> Run:
        _session(self._s, _key(tenant, session_id))
        key = _key(tenant, run_id or new_id("run"))
        if key in self._s.runs:
            raise Conflict(f"run {key[1]} already exists")
        t = self._now()
        run = Run(
            id=key[1],
            tenant_id=tenant,
            session_id=session_id,
            status=RunStatus.QUEUED,
            input=_json(input),
            created_at=t,
            updated_at=t,
            agent_version=agent_version,
        )
        self._s.runs[key] = run
        self._s.steps[key] = {}
        return run

    async def get(self, tenant: str, run_id: str) -> Run | None:
        return self._s.runs.get(_key(tenant, run_id))

    async def transition(
        self,
        tenant: str,
        run_id: str,
        to: RunStatus,
        *,
        expected: Sequence[RunStatus] | None = None,
        output: Json | Unset = UNSET,
        error: str | Unset | None = UNSET,
    ) -> Run:
        sources = leaving_for(to, expected)
        key = _key(tenant, run_id)
        run = _run(self._s, key)
        if run.status not in sources:
            allowed = ", ".join(sorted(s.value for s in sources))
            raise Conflict(f"run {run_id} is {run.status}; it moves to {to} only from {allowed}")
        run = replace(
            run,
            status=to,
            updated_at=self._now(),
            claimed_by=None,
            heartbeat_at=None,
            output=run.output if output is UNSET else _json(output),
            error=run.error if error is UNSET else error,
        )
        self._s.runs[key] = run
        return run

    async def claim(self, tenant: str, *, worker: str, limit: int = 1) -> list[Run]:
        t = self._now()
        queued = self._select(tenant, lambda r: r.status is RunStatus.QUEUED)
        claimed = [
            replace(
                r,
                status=RunStatus.RUNNING,
                claimed_by=worker,
                heartbeat_at=t,
                updated_at=t,
                attempt=r.attempt + 1,
            )
            for r in _oldest_first(queued)[:limit]
        ]
        self._s.runs.update({(tenant, r.id): r for r in claimed})
        return claimed

    async def heartbeat(self, tenant: str, run_id: str, *, worker: str) -> Run:
        key = _key(tenant, run_id)
        run = _held(_run(self._s, key), worker)
        run = replace(run, heartbeat_at=self._now())
        self._s.runs[key] = run
        return run

    async def requeue_stale(
        self, tenant: str, *, stale_before: float, limit: int = 100
    ) -> list[Run]:
        def stale(r: Run) -> bool:
            beat = r.heartbeat_at
            return r.status is RunStatus.RUNNING and beat is not None and beat < stale_before

        found = sorted(self._select(tenant, stale), key=lambda r: (r.heartbeat_at, r.id))[:limit]
        t = self._now()
        requeued = [
            replace(r, status=RunStatus.QUEUED, claimed_by=None, heartbeat_at=None, updated_at=t)
            for r in found
        ]
        self._s.runs.update({(tenant, r.id): r for r in requeued})
        return _oldest_first(requeued)

    async def unfinished(self, tenant: str, *, limit: int = 100) -> list[Run]:
        return _oldest_first(self._select(tenant, lambda r: r.status in UNFINISHED))[:limit]

    async def record_step(
        self,
        tenant: str,
        run_id: str,
        *,
        step_no: int,
        kind: StepKind,
        payload: Json = None,
        messages: Sequence[NewMessage] = (),
        idempotency_key: str | None = None,
        worker: str | None = None,
    ) -> StepRecord:
        key = _key(tenant, run_id)
        run = _run(self._s, key)
        if worker is not None:
            _held(run, worker)
        done = self._s.steps[key].get(step_no)
        if done is not None:
            if idempotency_key is None or done.idempotency_key != idempotency_key:
                raise Conflict(f"step {step_no} of run {run_id} is already recorded")
            produced = [
                m
                for m in self._s.history[(tenant, run.session_id)]
                if m.run_id == run_id and m.step_no == step_no
            ]
            return StepRecord(step=done, messages=tuple(produced), replayed=True)
        t = self._now()
        step = RunStep(
            run_id=run_id,
            step_no=step_no,
            kind=kind,
            payload=_json(payload),
            idempotency_key=idempotency_key,
            created_at=t,
        )
        stored = _append(
            self._s, (tenant, run.session_id), messages, t, run_id=run_id, step_no=step_no
        )
        self._s.steps[key][step_no] = step
        return StepRecord(step=step, messages=tuple(stored))

    async def steps(self, tenant: str, run_id: str) -> list[RunStep]:
        key = _key(tenant, run_id)
        _run(self._s, key)
        return [self._s.steps[key][n] for n in sorted(self._s.steps[key])]

    def _select(self, tenant: str, keep: Callable[[Run], bool]) -> list[Run]:
        _tenant(tenant)
        return [r for (t, _), r in self._s.runs.items() if t == tenant and keep(r)]


def _append(
    state: _State,
    key: Key,
    new: Sequence[NewMessage],
    now: float,
    *,
    run_id: str | None = None,
    step_no: int | None = None,
) -> list[StoredMessage]:
    """Everything is checked and built before anything changes: all or nothing, like SQL."""
    session = _session(state, key)
    hot = [m for m in state.history[key] if m.seq > state.archived_upto[key]]
    seen = {m.idempotency_key: m for m in hot if m.idempotency_key is not None}
    out: list[StoredMessage] = []
    fresh: list[StoredMessage] = []
    seq = session.message_count
    for item in new:
        key_ = item.idempotency_key
        if key_ is not None and key_ in seen:
            out.append(seen[key_])
            continue
        seq += 1
        msg = item.message
        stored = StoredMessage(
            session_id=key[1],
            seq=seq,
            role=msg["role"],
            content=_json(msg.get("content")),
            name=msg.get("name"),
            tool_calls=tuple(_json(list(msg.get("tool_calls") or ()))),
            tool_call_id=msg.get("tool_call_id"),
            tokens=item.tokens,
            created_at=now,
            run_id=run_id,
            step_no=step_no,
            idempotency_key=key_,
        )
        if key_ is not None:
            seen[key_] = stored
        out.append(stored)
        fresh.append(stored)
    state.history[key].extend(fresh)
    state.sessions[key] = replace(session, message_count=seq, updated_at=now)
    return out


def _tenant(tenant: str) -> str:
    return Scope(tenant).tenant  # the same checks as the SQL stores


def _key(tenant: str, id_: str) -> Key:
    return (_tenant(tenant), id_)


def _session(state: _State, key: Key) -> Session:
    session = state.sessions.get(key)
    if session is None:
        raise NotFound(f"session {key[1]} not found", param="session_id")
    return session


def _run(state: _State, key: Key) -> Run:
    run = state.runs.get(key)
    if run is None:
        raise NotFound(f"run {key[1]} not found", param="run_id")
    return run


def _held(run: Run, worker: str) -> Run:
    if run.status is not RunStatus.RUNNING or run.claimed_by != worker:
        raise Conflict(f"run {run.id} is {run.status}, no longer held by {worker}")
    return run


def _oldest_first(runs: Iterable[Run]) -> list[Run]:
    return sorted(runs, key=lambda r: (r.created_at, r.id))


def _json(value: T) -> T:
    """``value`` as it comes back from a JSON column: a deep copy, tuples as lists."""
    try:
        copied: T = msgspec.json.decode(msgspec.json.encode(value))
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"a value cannot be stored: {exc}") from exc
    return copied


def _implements_ports(stores: MemoryStores) -> tuple[SessionStore, RunStore]:
    """Never called: type checkers verify here that the memory stores implement the ports."""
    return stores.sessions, stores.runs


# --- scratch Postgres databases ----------------------------------------------------------------

POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"


async def create_scratch_database(server: str = POSTGRES_SERVER) -> str:
    """Create an empty database ``wayport_test_<random>`` on ``server`` (a libpq URL without a
    database) and return its SQLAlchemy URL. Raises ``OSError`` or an ``asyncpg`` error when the
    server cannot be reached::

        url = await create_scratch_database()
        try:
            store = await open_store(url)
            ...
        finally:
            await drop_scratch_database(url)
    """
    name = f"wayport_test_{os.urandom(6).hex()}"
    conn = await asyncpg.connect(_with_database(server, "postgres"), timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _with_database(server, name).replace("postgresql://", "postgresql+asyncpg://", 1)


async def drop_scratch_database(url: str) -> None:
    """Drop a database ``create_scratch_database`` made, closing any connection still open."""
    parts = urlsplit(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    name = parts.path.lstrip("/")
    if not name.startswith("wayport_test_"):
        raise ValueError(f"refusing to drop {name!r}: not a scratch database")
    conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _with_database(server: str, name: str) -> str:
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
