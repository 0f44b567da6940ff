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

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import msgspec

from wayport.core.agent import AgentSpec
from wayport.core.errors import Conflict, InvalidRequest, NotFound
from wayport.core.ids import new_id
from wayport.core.session import (
    UNFINISHED,
    UNSET,
    Checkpoint,
    Json,
    NewMessage,
    NewStep,
    Run,
    RunEnd,
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
from wayport.store.codec import spec_from_json, spec_to_json
from wayport.store.scope import Scope
from wayport.testing.postgres import POSTGRES_SERVER as POSTGRES_SERVER  # re-exported
from wayport.testing.postgres import create_scratch_database as create_scratch_database
from wayport.testing.postgres import drop_scratch_database as drop_scratch_database

T = TypeVar("T")
Key = tuple[str, str]  # (tenant, id): ids are unique per tenant, as in the SQL schema


@dataclass(slots=True)
class _State:
    sessions: dict[Key, Session] = field(default_factory=dict)
    history: dict[Key, list[StoredMessage]] = field(default_factory=dict)
    archived_upto: dict[Key, int] = field(default_factory=dict)
    runs: dict[Key, Run] = field(default_factory=dict)
    steps: dict[Key, dict[int, RunStep]] = field(default_factory=dict)
    agents: dict[tuple[str, str, str], Json] = field(default_factory=dict)  #: pinned specs


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

    async def recent(
        self,
        tenant: str,
        *,
        limit: int = 50,
        before: tuple[float, str] | None = None,
        agent: str | None = None,
    ) -> list[Session]:
        _tenant(tenant)
        if limit < 1:
            raise InvalidRequest("limit must be at least 1", param="limit")
        found = [
            s
            for (t, _), s in self._s.sessions.items()
            if t == tenant
            and (agent is None or s.agent == agent)
            and (before is None or (s.updated_at, s.id) < before)
        ]
        return sorted(found, key=lambda s: (s.updated_at, s.id), reverse=True)[:limit]


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
        worker: str | None = None,
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
        if worker is not None:
            run = replace(
                run,
                status=RunStatus.RUNNING,
                claimed_by=worker,
                heartbeat_at=t,
                attempt=1,
                started_at=t,
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

    async def checkpoint(
        self,
        tenant: str,
        run_id: str,
        *,
        inbound: Sequence[NewMessage] = (),
        steps: Sequence[NewStep] = (),
        end: RunEnd | None = None,
        started_at: float | None = None,
        worker: str | None = None,
    ) -> Checkpoint:
        # everything is checked and built before anything changes: all or nothing, like SQL
        if end is not None and end.status is RunStatus.RUNNING:
            raise ValueError("a checkpoint cannot end a run as 'running'")
        key = _key(tenant, run_id)
        run = _run(self._s, key)
        if run.status is not RunStatus.RUNNING or (worker is not None and run.claimed_by != worker):
            raise Conflict(f"run {run_id} is {run.status}, not running for {worker}")
        recorded = self._s.steps[key]
        history = self._s.history[(tenant, run.session_id)]
        items = list(inbound)
        tags: list[tuple[str | None, int | None]] = [(None, None)] * len(inbound)
        replayed: dict[int, StepRecord] = {}
        for step in steps:
            done = recorded.get(step.step_no)
            if done is None:
                items.extend(step.messages)
                tags.extend([(run_id, step.step_no)] * len(step.messages))
            elif step.idempotency_key is None or done.idempotency_key != step.idempotency_key:
                raise Conflict(f"step {step.step_no} of run {run_id} is already recorded")
            else:
                produced = [m for m in history if (m.run_id, m.step_no) == (run_id, step.step_no)]
                replayed[step.step_no] = StepRecord(
                    step=done, messages=tuple(produced), replayed=True
                )
        t = self._now()
        payloads = {s.step_no: _json(s.payload) for s in steps}
        output = _json(end.output) if end is not None else None
        stored = _append(self._s, (tenant, run.session_id), items, t, tags=tags)
        records: list[StepRecord] = []
        at = len(inbound)
        for step in steps:
            if step.step_no in replayed:
                records.append(replayed[step.step_no])
                continue
            made = RunStep(
                run_id=run_id,
                step_no=step.step_no,
                kind=step.kind,
                payload=payloads[step.step_no],
                idempotency_key=step.idempotency_key,
                created_at=t,
            )
            recorded[step.step_no] = made
            records.append(
                StepRecord(step=made, messages=tuple(stored[at : at + len(step.messages)]))
            )
            at += len(step.messages)
        run = replace(run, updated_at=t, started_at=run.started_at or started_at)
        if end is not None:
            run = replace(
                run,
                status=end.status,
                output=output,
                error=end.error,
                claimed_by=None,
                heartbeat_at=None,
                started_at=None if end.status.waiting else run.started_at,
            )
        self._s.runs[key] = run
        return Checkpoint(run=run, inbound=tuple(stored[: len(inbound)]), steps=tuple(records))

    async def pin_agent(self, tenant: str, spec: AgentSpec) -> None:
        self._s.agents.setdefault((_tenant(tenant), spec.name, spec.version), spec_to_json(spec))

    async def pinned_agent(self, tenant: str, agent: str, version: str) -> AgentSpec | None:
        found = self._s.agents.get((_tenant(tenant), agent, version))
        return None if found is None else spec_from_json(_json(found))

    async def set_agent_version(  # releases: failover
        self, tenant: str, run_id: str, version: str, *, worker: str | None = None
    ) -> Run:
        key = _key(tenant, run_id)
        run = _run(self._s, key)
        if run.status is not RunStatus.RUNNING or (worker is not None and run.claimed_by != worker):
            raise Conflict(f"run {run_id} is {run.status}, not running for {worker}")
        run = replace(run, agent_version=version, updated_at=self._now())
        self._s.runs[key] = run
        return run

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
    tags: Sequence[tuple[str | None, int | None]] | None = None,
) -> list[StoredMessage]:
    """Everything is checked and built before anything changes: all or nothing, like SQL."""
    session = _session(state, key)
    hot = [m for m in state.history[key] if m.seq > state.archived_upto[key]]
    seen = {m.idempotency_key: m for m in hot if m.idempotency_key is not None}
    out: list[StoredMessage] = []
    fresh: list[StoredMessage] = []
    seq = session.message_count
    for i, item in enumerate(new):
        key_ = item.idempotency_key
        if key_ is not None and key_ in seen:
            out.append(seen[key_])
            continue
        seq += 1
        msg = item.message
        rid, sno = tags[i] if tags is not None else (run_id, step_no)
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
            run_id=rid,
            step_no=sno,
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
