"""The console's JSON routes, read by its pages' scripts. Every answer is the signed-in
principal's tenant's data only.

    GET /console/api/overview?minutes=60   totals and one point per minute (charts)
    GET /console/api/requests              the latest requests: status, tokens, trace id
    GET /console/api/traces                the latest traces (their root spans)
    GET /console/api/traces/{trace_id}     one trace's spans
    GET /console/api/agents                agents, their current version, versions seen
    GET /console/api/releases              versions per agent and rollouts (none yet)
    GET /console/api/sessions?agent=&before=  sessions, newest first, a page at a time
    GET /console/api/sessions/{id}         a session and its transcript (tool calls included)
    GET /console/api/usage?group_by=key    usage by key, agent or model (the usage ledger)
    GET /console/api/audit                 the audit log
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs

from wayport.core.agent import AgentSpec
from wayport.core.errors import InvalidRequest, NotFound
from wayport.core.identity import Principal
from wayport.core.release_codec import state_to_dict
from wayport.core.release_records import Rollout
from wayport.core.session import StoredMessage
from wayport.server.http import Exchange
from wayport.server.responses import encode
from wayport.service.agent_defs import tenant_agent, tenant_agents
from wayport.service.agents import AgentService
from wayport.service.gateway import Gateway
from wayport.telemetry.timeseries import Timeseries
from wayport.telemetry.tracing import RecentTraces

API_PREFIX = "/console/api/"
_USAGE_GROUPS = ("key", "agent", "model", "user")
_MAX_TEXT = 300  #: an agent name or page cursor in a query string
_COST_RECORDS = 20_000  #: ledger records read for the cost chart (the newest window)


class UsageLedger(Protocol):
    """The usage ledger (``wayport.service.usage.UsageService`` fits)."""

    async def totals(
        self, tenant: str, *, group_by: str, since: float | None = None
    ) -> Sequence[Any]: ...

    async def records(
        self, tenant: str, *, since: float | None = None, limit: int = 1000
    ) -> Sequence[Any]: ...


class Releases(Protocol):
    """Agent versions and rollouts (``wayport.service.releases.ReleaseService`` fits)."""

    async def rollouts(self, tenant: str) -> Sequence[Rollout]: ...

    async def versions(self, tenant: str, agent: str) -> Sequence[Any]: ...

    async def current(self, tenant: str, configured: AgentSpec) -> str: ...


class AuditEntries(Protocol):
    """The audit log (``wayport.service.audit.AuditService`` fits)."""

    async def entries(self, tenant: str, *, after: int = 0, limit: int = 100) -> Sequence[Any]: ...


#: Finds the usage ledger or audit log once the stores are open (``None``: not available).
Lookup = Callable[[], Awaitable[Any]]


def _query(ex: Exchange) -> dict[str, list[str]]:
    raw = ex.scope.get("query_string", b"")
    return parse_qs(raw.decode("latin-1"), max_num_fields=16) if raw else {}


def _int(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[0])
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer", param=name) from None
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}", param=name)
    return value


def _text(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values or not values[0]:
        return None
    if len(values[0]) > _MAX_TEXT:
        raise InvalidRequest(f"{name} is too long", param=name)
    return values[0]


def cursor(updated_at: float, session_id: str) -> str:
    """The session browser's page cursor: the last session shown, ``<updated_at>:<id>``."""
    return f"{updated_at!r}:{session_id}"


def _cursor(raw: str | None) -> tuple[float, str] | None:
    if raw is None:
        return None
    at, _, session_id = raw.partition(":")
    try:
        value = float(at)
    except ValueError:
        value = math.nan
    if not session_id or not math.isfinite(value):
        raise InvalidRequest("before must be a cursor from an earlier page", param="before")
    return value, session_id


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "value") and type(value).__module__.startswith("wayport"):
        return value.value  # enums
    return value


def _message(m: StoredMessage) -> dict[str, Any]:
    return {
        "seq": m.seq,
        "role": m.role,
        "content": m.content,
        "name": m.name,
        "tool_calls": list(m.tool_calls),
        "tool_call_id": m.tool_call_id,
        "tokens": m.tokens,
        "created_at": m.created_at,
        "run_id": m.run_id,
        "step_no": m.step_no,
    }


class ConsoleApi:
    def __init__(
        self,
        *,
        gateway: Gateway,
        series: Timeseries,
        traces: RecentTraces | None,
        agents: AgentService | None,
        usage: Lookup | None = None,
        audit: Lookup | None = None,
        releases: Releases | None = None,
    ) -> None:
        self._gateway = gateway
        self._series = series
        self._traces = traces
        self._agents = agents
        self._usage = usage
        self._audit = audit
        self._releases = releases

    async def handle(self, ex: Exchange, principal: Principal) -> None:
        """Answer ``GET /console/api/<what>``."""
        tail = ex.path[len(API_PREFIX) :]
        name, _, rest = tail.partition("/")
        tenant = principal.tenant
        query = _query(ex)
        body: Any
        if name == "overview" and not rest:
            minutes = _int(query, "minutes", 60, 1, 1440)
            summary = self._series.summary(tenant, minutes=minutes)
            points = self._series.points(tenant, minutes=minutes)
            await self._add_costs(tenant, summary, points)
            body = {
                "summary": summary,
                "points": points,
                "models": self._gateway.models(),
                "ready": self._gateway.ready(),
                "tracing": self._traces is not None,
            }
        elif name == "requests" and not rest:
            body = {"data": self._series.recent(tenant, limit=_int(query, "limit", 50, 1, 200))}
        elif name == "traces":
            body = self._trace(tenant, rest, query)
        elif name == "agents" and not rest:
            body = {"data": await self._agent_list(tenant)}
        elif name == "releases" and not rest:
            body = await self._release_list(tenant)
        elif name == "sessions":
            body = await self._sessions(tenant, rest, query)
        elif name == "usage" and not rest:
            body = await self._usage_totals(tenant, query)
        elif name == "audit" and not rest:
            body = await self._audit_entries(tenant, query)
        else:
            raise NotFound(f"No console route {ex.path}")
        await ex.respond(200, encode(body), headers=[(b"cache-control", b"no-store")])

    def _trace(self, tenant: str, trace_id: str, query: dict[str, list[str]]) -> Any:
        if self._traces is None:
            if trace_id:
                raise NotFound("Tracing is off (telemetry.traces: false)")
            return {"data": [], "tracing": False}
        if not trace_id:
            limit = _int(query, "limit", 50, 1, 200)
            return {"data": self._traces.traces(tenant=tenant, limit=limit), "tracing": True}
        spans = self._traces.trace(trace_id, tenant=tenant)
        if spans is None:
            raise NotFound(f"No trace {trace_id!r} is kept here")
        return {"trace_id": trace_id, "spans": spans}

    async def _agent_list(self, tenant: str) -> list[dict[str, Any]]:
        if self._agents is None:
            return []
        catalog = self._agents.catalog
        return [
            {
                "name": a.name,
                "model": a.model,
                "description": a.description,
                "version": a.version,
                "versions": list(catalog.versions(a.name)),
                "tools": list(a.tools),
            }
            for a in await tenant_agents(self._agents, tenant)  # the tenant's own too
        ]

    async def _release_list(self, tenant: str) -> dict[str, Any]:
        """Each agent's live version and versions known, and the rollouts in progress."""
        agents = await self._agent_list(tenant)
        releases = self._releases
        if releases is None or self._agents is None:
            return {"data": agents, "rollouts": [], "available": False}
        for agent in agents:
            spec = await tenant_agent(self._agents, agent["name"], tenant)
            agent["version"] = await releases.current(tenant, spec)
            stored = [v.version for v in await releases.versions(tenant, agent["name"])]
            agent["versions"] = list(dict.fromkeys([*stored, *agent["versions"]]))
        rollouts = [
            {"revision": r.revision, "updated_at": r.updated_at, **state_to_dict(r.state)}
            for r in await releases.rollouts(tenant)
        ]
        return {"data": agents, "rollouts": rollouts, "available": True}

    async def _sessions(self, tenant: str, session_id: str, query: dict[str, list[str]]) -> Any:
        if self._agents is None:
            raise NotFound("Agents are not served here")
        store = self._agents.stores.sessions
        if not session_id:
            limit = _int(query, "limit", 50, 1, 200)
            agent = _text(query, "agent")
            before = _cursor(_text(query, "before"))
            # one more than shown: whether an older page exists, without counting
            found = await store.recent(tenant, limit=limit + 1, before=before, agent=agent)
            shown = found[:limit]
            return {
                "data": [
                    {
                        "id": s.id,
                        "agent": s.agent,
                        "agent_version": s.agent_version,
                        "created_at": s.created_at,
                        "updated_at": s.updated_at,
                        "messages": s.message_count,
                    }
                    for s in shown
                ],
                "next": cursor(shown[-1].updated_at, shown[-1].id) if len(found) > limit else None,
            }
        session = await store.get(tenant, session_id)
        if session is None:
            raise NotFound(f"No session {session_id!r}")
        after = _int(query, "after", 0, 0, 1 << 62)
        history = await store.history(tenant, session_id, after=after, limit=500)
        return {
            "id": session.id,
            "agent": session.agent,
            "agent_version": session.agent_version,
            "created_at": session.created_at,
            "updated_at": session.updated_at,
            "summary": session.summary,
            "messages": [_message(m) for m in history],
        }

    async def _add_costs(
        self, tenant: str, summary: dict[str, Any], points: list[dict[str, Any]]
    ) -> None:
        """Cost per minute from the usage ledger (it prices every request and run)."""
        ledger: UsageLedger | None = await self._usage() if self._usage is not None else None
        if ledger is None or not points:
            return
        start = points[0]["t"]
        records = await ledger.records(tenant, since=start, limit=_COST_RECORDS)
        by_minute = {p["t"]: p for p in points}
        total = 0.0
        for record in records:
            point = by_minute.get(int(record.at // 60 * 60))
            if point is not None:
                point["cost"] = round(point["cost"] + record.cost, 6)
                total += record.cost
        summary["cost"] = round(summary["cost"] + total, 6)
        finished = summary["runs_completed"] + summary["runs_failed"]
        summary["cost_per_task"] = summary["cost"] / finished if finished else None

    async def _usage_totals(self, tenant: str, query: dict[str, list[str]]) -> Any:
        group_by = (query.get("group_by") or ["key"])[0]
        if group_by not in _USAGE_GROUPS:
            raise InvalidRequest(
                f"group_by must be one of {', '.join(_USAGE_GROUPS)}", param="group_by"
            )
        ledger: UsageLedger | None = await self._usage() if self._usage is not None else None
        if ledger is None:
            return {"available": False, "data": []}
        minutes = _int(query, "minutes", 1440, 1, 60 * 24 * 90)
        since = time.time() - minutes * 60
        totals = await ledger.totals(tenant, group_by=group_by, since=since)
        return {"available": True, "group_by": group_by, "data": [_plain(t) for t in totals]}

    async def _audit_entries(self, tenant: str, query: dict[str, list[str]]) -> Any:
        log: AuditEntries | None = await self._audit() if self._audit is not None else None
        if log is None:
            return {"available": False, "data": []}
        after = _int(query, "after", 0, 0, 1 << 62)
        entries = await log.entries(tenant, after=after, limit=_int(query, "limit", 100, 1, 500))
        return {"available": True, "data": [_plain(e) for e in entries]}
