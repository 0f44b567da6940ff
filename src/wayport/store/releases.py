"""The ``ReleaseStore`` on SQL: rollouts, release events, signal slices, feedback and eval
results (tables in ``schema.py``, created by migration 8).

A rollout changes only by compare-and-set: ``UPDATE rollouts SET …, revision = revision + 1
WHERE agent = :agent AND revision = :expected``; the replica whose update matches no row lost
the race and gets ``Conflict`` (it reloads and decides again)::

    store = SqlReleaseStore(db)
    saved = await store.put_rollout("default", state, strategy, expected=None,
                                    window_start=now, now=now)
    await store.put_rollout("default", next_state, strategy, expected=saved.revision, …)

With a ``sealer`` holding keys, what may quote users or answers is sealed at rest
(``wayport.store.sealing``): event details (a shadow event records both answers), feedback
comments and per-case eval results.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from wayport.core.errors import Conflict
from wayport.core.release import TERMINAL, RolloutState, Strategy
from wayport.core.release_codec import (
    state_from_dict,
    state_to_dict,
    strategy_from_dict,
    strategy_to_dict,
)
from wayport.core.release_records import (
    EvalResult,
    Feedback,
    ReleaseEvent,
    Rollout,
    VersionInfo,
)
from wayport.core.release_signals import Aggregate, merged
from wayport.store.database import Database
from wayport.store.schema import agent_versions as AV
from wayport.store.schema import eval_results as ER
from wayport.store.schema import feedback as FB
from wayport.store.schema import release_events as EV
from wayport.store.schema import release_signals as SG
from wayport.store.schema import rollouts as RO
from wayport.store.scope import Scope, scoped_insert, scoped_select, scoped_update
from wayport.store.sealing import NO_SEALING, Sealer

#: the sealing purposes (associated data)
EVENT_DETAIL, COMMENT, EVAL_RESULTS = (
    "release_events.detail",
    "feedback.comment",
    "eval_results.results",
)

_ROLLOUT = scoped_select(RO).where(RO.c.agent == param("agent"))
_ROLLOUTS = scoped_select(RO).order_by(RO.c.agent)
_INSERT_ROLLOUT = scoped_insert(RO)
_CAS_ROLLOUT = (
    scoped_update(RO)
    .where(RO.c.agent == param("b_agent"), RO.c.revision == param("expected"))
    .values(
        state=param("b_state"),
        strategy=param("b_strategy"),
        revision=RO.c.revision + 1,
        window_start=param("b_window"),
        updated_at=param("b_now"),
    )
)
_INSERT_EVENT = scoped_insert(EV)
_EVENTS = (
    scoped_select(EV)
    .where(EV.c.agent == param("agent"))
    .order_by(EV.c.at.desc(), EV.c.id.desc())
    .limit(param("limit"))
)
_SLICE = scoped_select(SG, SG.c.data).where(
    SG.c.agent == param("agent"),
    SG.c.version == param("version"),
    SG.c.bucket == param("bucket"),
    SG.c.replica == param("replica"),
)
_INSERT_SLICE = scoped_insert(SG)
_UPDATE_SLICE = (
    scoped_update(SG)
    .where(
        SG.c.agent == param("b_agent"),
        SG.c.version == param("b_version"),
        SG.c.bucket == param("b_bucket"),
        SG.c.replica == param("b_replica"),
    )
    .values(data=param("b_data"))
)
_SIGNALS = scoped_select(SG, SG.c.data).where(
    SG.c.agent == param("agent"), SG.c.version == param("version"), SG.c.bucket >= param("since")
)
_FEEDBACK_OF = scoped_select(FB, FB.c.run_id).where(FB.c.run_id == param("run_id"))
_INSERT_FEEDBACK = scoped_insert(FB)
_UPDATE_FEEDBACK = (
    scoped_update(FB)
    .where(FB.c.run_id == param("b_run_id"))
    .values(score=param("b_score"), comment=param("b_comment"), at=param("b_at"))
)
_FEEDBACK_COUNTS = (
    scoped_select(FB, FB.c.score, sa.func.count())
    .where(
        FB.c.agent == param("agent"), FB.c.version == param("version"), FB.c.at >= param("since")
    )
    .group_by(FB.c.score)
)
_INSERT_EVAL = scoped_insert(ER)
_LATEST_EVAL = (
    scoped_select(ER)
    .where(ER.c.agent == param("agent"), ER.c.version == param("version"))
    .order_by(ER.c.at.desc(), ER.c.id.desc())
    .limit(1)
)
_LATEST_EVAL_OF_SUITE = _LATEST_EVAL.where(ER.c.suite == param("suite"))
_VERSIONS = (
    scoped_select(AV, AV.c.agent, AV.c.version, AV.c.created_at)
    .where(AV.c.agent == param("agent"))
    .order_by(AV.c.created_at, AV.c.version)
)


def event_id() -> str:
    """A release event id that sorts by creation time (events of one instant keep their order
    within a process)."""
    return f"rel-{time.time_ns():016x}{os.urandom(4).hex()}"


def _rollout(row: Any) -> Rollout:
    return Rollout(
        state=state_from_dict(row.state),
        strategy=strategy_from_dict(row.strategy),
        revision=row.revision,
        window_start=row.window_start,
        updated_at=row.updated_at,
    )


def _eval(row: Any, sealer: Sealer) -> EvalResult:
    return EvalResult(
        id=row.id,
        agent=row.agent,
        suite=row.suite,
        version=row.version,
        score=row.score,
        results=list(sealer.open(row.tenant_id, EVAL_RESULTS, row.results)),
        at=row.at,
    )


class SqlReleaseStore:
    def __init__(self, db: Database, *, sealer: Sealer = NO_SEALING) -> None:
        self.db = db
        self._sealer = sealer  #: encryption at rest (``wayport.store.sealing``)

    async def rollout(self, tenant: str, agent: str) -> Rollout | None:
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> Rollout | None:
            row = scope.execute(conn, _ROLLOUT, {"agent": agent}).first()
            return None if row is None else _rollout(row)

        return await self.db.read(job)

    async def rollouts(self, tenant: str) -> list[Rollout]:
        scope = Scope(tenant)
        return await self.db.read(
            lambda conn: [_rollout(r) for r in scope.execute(conn, _ROLLOUTS)]
        )

    async def put_rollout(
        self,
        tenant: str,
        state: RolloutState,
        strategy: Strategy,
        *,
        expected: int | None,
        window_start: float,
        now: float,
    ) -> Rollout:
        scope = Scope(tenant)
        values = {
            "b_agent": state.agent,
            "b_state": state_to_dict(state),
            "b_strategy": strategy_to_dict(strategy),
            "b_window": window_start,
            "b_now": now,
        }

        def job(conn: sa.Connection) -> Rollout:
            target = expected
            if target is None:
                row = scope.execute(conn, _ROLLOUT, {"agent": state.agent}).first()
                if row is None:
                    scope.execute(
                        conn,
                        _INSERT_ROLLOUT,
                        {
                            "agent": state.agent,
                            "state": values["b_state"],
                            "strategy": values["b_strategy"],
                            "revision": 1,
                            "window_start": window_start,
                            "updated_at": now,
                        },
                    )
                    return _reread(conn)
                if state_from_dict(row.state).phase not in TERMINAL:
                    raise Conflict(
                        f"a rollout of {state.agent!r} is in progress; promote or abort it first",
                        code="rollout_in_progress",
                    )
                target = row.revision
            done = scope.execute(conn, _CAS_ROLLOUT, {**values, "expected": target})
            if done.rowcount != 1:
                raise Conflict(
                    f"the rollout of {state.agent!r} changed meanwhile", code="rollout_changed"
                )
            return _reread(conn)

        def _reread(conn: sa.Connection) -> Rollout:
            return _rollout(scope.execute(conn, _ROLLOUT, {"agent": state.agent}).one())

        return await self.db.write(job)

    async def add_event(
        self, tenant: str, agent: str, event: str, detail: Mapping[str, Any], *, at: float
    ) -> ReleaseEvent:
        scope = Scope(tenant)
        made = ReleaseEvent(id=event_id(), agent=agent, event=event, detail=dict(detail), at=at)
        detail = self._sealer.seal(tenant, EVENT_DETAIL, made.detail)
        row = {"id": made.id, "agent": agent, "event": event, "detail": detail, "at": at}
        await self.db.write(lambda conn: scope.execute(conn, _INSERT_EVENT, row))
        return made

    async def events(self, tenant: str, agent: str, *, limit: int = 50) -> list[ReleaseEvent]:
        scope, sealer = Scope(tenant), self._sealer

        def job(conn: sa.Connection) -> list[ReleaseEvent]:
            rows = scope.execute(conn, _EVENTS, {"agent": agent, "limit": limit})
            return [
                ReleaseEvent(
                    id=r.id,
                    agent=r.agent,
                    event=r.event,
                    detail=dict(sealer.open(tenant, EVENT_DETAIL, r.detail) or {}),
                    at=r.at,
                )
                for r in rows
            ]

        return await self.db.read(job)

    async def add_signals(
        self,
        tenant: str,
        slices: Sequence[tuple[str, str, float, Aggregate]],
        *,
        replica: str,
    ) -> None:
        if not slices:
            return
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> None:
            for agent, version, bucket, aggregate in slices:
                key = {"agent": agent, "version": version, "bucket": bucket, "replica": replica}
                found = scope.execute(conn, _SLICE, key).scalar()
                if found is None:
                    scope.execute(conn, _INSERT_SLICE, {**key, "data": aggregate.to_dict()})
                    continue
                total = Aggregate.from_dict(found)
                total.merge(aggregate)
                update = {f"b_{name}": value for name, value in key.items()}
                scope.execute(conn, _UPDATE_SLICE, {**update, "b_data": total.to_dict()})

        await self.db.write(job)

    async def signals(self, tenant: str, agent: str, version: str, *, since: float) -> Aggregate:
        scope = Scope(tenant)
        params = {"agent": agent, "version": version, "since": since}
        return await self.db.read(
            lambda conn: merged(
                Aggregate.from_dict(data)
                for data in scope.execute(conn, _SIGNALS, params).scalars()
            )
        )

    async def add_feedback(self, tenant: str, feedback: Feedback) -> None:
        scope = Scope(tenant)
        row = {
            "run_id": feedback.run_id,
            "agent": feedback.agent,
            "version": feedback.version,
            "score": feedback.score,
            "comment": self._sealer.seal_text(tenant, COMMENT, feedback.comment),
            "at": feedback.at,
        }

        def job(conn: sa.Connection) -> None:
            if scope.execute(conn, _FEEDBACK_OF, {"run_id": feedback.run_id}).first() is None:
                scope.execute(conn, _INSERT_FEEDBACK, row)
            else:
                scope.execute(conn, _UPDATE_FEEDBACK, {f"b_{k}": v for k, v in row.items()})

        await self.db.write(job)

    async def feedback_counts(
        self, tenant: str, agent: str, version: str, *, since: float
    ) -> tuple[int, int]:
        scope = Scope(tenant)
        params = {"agent": agent, "version": version, "since": since}

        def job(conn: sa.Connection) -> tuple[int, int]:
            rows: list[Any] = list(scope.execute(conn, _FEEDBACK_COUNTS, params))
            counts = {int(row[0]): int(row[1]) for row in rows}
            return counts.get(1, 0), counts.get(-1, 0)

        return await self.db.read(job)

    async def add_eval(self, tenant: str, result: EvalResult) -> None:
        scope = Scope(tenant)
        row = {
            "id": result.id,
            "agent": result.agent,
            "suite": result.suite,
            "version": result.version,
            "score": result.score,
            "results": self._sealer.seal(tenant, EVAL_RESULTS, result.results),
            "at": result.at,
        }
        await self.db.write(lambda conn: scope.execute(conn, _INSERT_EVAL, row))

    async def latest_eval(
        self, tenant: str, agent: str, version: str, *, suite: str | None = None
    ) -> EvalResult | None:
        scope = Scope(tenant)
        statement = _LATEST_EVAL if suite is None else _LATEST_EVAL_OF_SUITE
        params = {"agent": agent, "version": version, "suite": suite}

        def job(conn: sa.Connection) -> EvalResult | None:
            row = scope.execute(conn, statement, params).first()
            return None if row is None else _eval(row, self._sealer)

        return await self.db.read(job)

    async def versions(self, tenant: str, agent: str) -> list[VersionInfo]:
        scope = Scope(tenant)
        return await self.db.read(
            lambda conn: [
                VersionInfo(agent=r.agent, version=r.version, created_at=r.created_at)
                for r in scope.execute(conn, _VERSIONS, {"agent": agent})
            ]
        )
