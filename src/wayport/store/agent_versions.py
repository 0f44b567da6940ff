"""Pinned agent definitions on SQL: the ``agent_versions`` table, one row per tenant, agent
and version (a content hash, so a row never changes once written).

A run records the version it started with; a run resumed after a restart, or after its agent
was edited, loads that definition here instead of running the current one::

    await runs.pin_agent("default", spec)                   # once per version
    spec = await runs.pinned_agent("default", "support", run.agent_version)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from wayport.core.agent import AgentSpec
from wayport.store.codec import spec_from_json, spec_to_json
from wayport.store.schema import agent_versions as V
from wayport.store.scope import Scope, scoped_insert, scoped_select

_GET = scoped_select(V, V.c.spec).where(V.c.agent == param("agent"), V.c.version == param("v"))
_INSERT = scoped_insert(V)


def pin_job(tenant: str, spec: AgentSpec, now: float) -> Callable[[sa.Connection], None]:
    scope = Scope(tenant)
    row: dict[str, Any] = {
        "agent": spec.name,
        "version": spec.version,
        "spec": spec_to_json(spec),
        "created_at": now,
    }

    def job(conn: sa.Connection) -> None:
        # look first: a plain insert of a stored version would fail the whole group commit batch
        if scope.execute(conn, _GET, {"agent": spec.name, "v": row["version"]}).first() is None:
            scope.execute(conn, _INSERT, row)

    return job


def get_job(tenant: str, agent: str, version: str) -> Callable[[sa.Connection], AgentSpec | None]:
    scope = Scope(tenant)

    def job(conn: sa.Connection) -> AgentSpec | None:
        found = scope.execute(conn, _GET, {"agent": agent, "v": version}).scalar()
        return None if found is None else spec_from_json(found)

    return job
