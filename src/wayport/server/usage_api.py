"""``GET /v1/usage`` (viewer and up), and the metering helpers the model and agent routes share.

    GET /v1/usage?group_by=model&since=2025-06-01&until=1750000000
    {"object": "usage", "group_by": "model", "since": …, "until": …,
     "data": [{"group": "gpt-4o-mini", "requests": 12, "runs": 0, "prompt_tokens": …,
               "completion_tokens": …, "total_tokens": …, "cost": 0.0123,
               "latency_ms": 812.5}, …],
     "total": {…}}

``since`` and ``until`` take epoch seconds or an ISO 8601 date or time (UTC when no zone is
given); the caller's tenant is always the one reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from wayport.core.agent import AgentSpec, RunFinished
from wayport.core.errors import InvalidRequest, WayportError
from wayport.core.usage import GROUPS, UsageTotal
from wayport.server.http import Exchange
from wayport.server.responses import encode
from wayport.service.metering import AgentInfo, Meter, Metering
from wayport.service.usage import UsageService

USAGE_PATH = "/v1/usage"


def max_tokens_of(raw: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = raw.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return int(value)
    return None


def prompt_chars(messages: object) -> int:
    """The characters of the text the model will read (a cheap upper bound of its tokens)."""
    if isinstance(messages, str):
        return len(messages)
    if not isinstance(messages, list):
        return 0
    total = 0
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else m
        total += len(content) if isinstance(content, str) else len(str(content or ""))
    return total


async def begin_request(
    metering: Metering | None, ex: Exchange, model: str, raw: dict[str, Any], size: int
) -> Meter | None:
    """Admit a model request (``size``: the body's bytes, an upper bound of the prompt)."""
    if metering is None:
        return None
    messages = raw.get("messages")
    return await metering.begin(
        ex.principal,
        model=model,
        max_tokens=max_tokens_of(raw),
        prompt_chars=size,
        messages=len(messages) if isinstance(messages, list) else 1,
    )


async def begin_run(
    metering: Metering | None, ex: Exchange, agent: AgentInfo, messages: object
) -> Meter | None:
    if metering is None:
        return None
    return await metering.begin(
        ex.principal,
        model=agent.model,
        max_tokens=agent.max_tokens,
        prompt_chars=prompt_chars(messages),
        messages=len(messages) if isinstance(messages, list) else 1,
        agent=agent,
    )


def time_param(query: dict[str, list[str]], name: str) -> float | None:
    values = query.get(name)
    if not values or not values[-1]:
        return None
    text = values[-1]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequest(
            f"{name} must be epoch seconds or an ISO 8601 date", param=name
        ) from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def total_of(rows: list[UsageTotal]) -> UsageTotal:
    count = sum(t.requests + t.runs for t in rows)
    return UsageTotal(
        group="total",
        requests=sum(t.requests for t in rows),
        runs=sum(t.runs for t in rows),
        prompt_tokens=sum(t.prompt_tokens for t in rows),
        completion_tokens=sum(t.completion_tokens for t in rows),
        cost=sum(t.cost for t in rows),
        latency_ms=(
            sum(t.latency_ms * (t.requests + t.runs) for t in rows) / count if count else 0.0
        ),
    )


def total_body(t: UsageTotal) -> dict[str, Any]:
    return {
        "group": t.group,
        "requests": t.requests,
        "runs": t.runs,
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.completion_tokens,
        "total_tokens": t.total_tokens,
        "cost": round(t.cost, 10),
        "latency_ms": round(t.latency_ms, 3),
    }


class UsageApi:
    def __init__(self, usage: UsageService) -> None:
        self._usage = usage

    async def get(self, ex: Exchange) -> None:
        query = parse_qs(ex.scope.get("query_string", b"").decode("latin-1"))
        group_by = (query.get("group_by") or ["model"])[-1]
        if group_by not in GROUPS:
            raise InvalidRequest(f"group_by must be one of {', '.join(GROUPS)}", param="group_by")
        since = time_param(query, "since")
        until = time_param(query, "until")
        rows = await self._usage.totals(
            ex.principal.tenant, group_by=group_by, since=since, until=until
        )
        body = {
            "object": "usage",
            "tenant": ex.principal.tenant,
            "group_by": group_by,
            "since": since,
            "until": until,
            "data": [total_body(t) for t in rows],
            "total": total_body(total_of(rows)),
        }
        await ex.respond(200, encode(body))


def agent_info(spec: AgentSpec) -> AgentInfo:
    given = spec.params.get("max_tokens")
    max_tokens = given if isinstance(given, int) and not isinstance(given, bool) else None
    return AgentInfo(
        name=spec.name,
        version=spec.version,
        model=spec.model,
        max_steps=spec.limits.max_steps,
        max_tokens=max_tokens,
    )


async def run_done(meter: Meter | None, finished: RunFinished) -> None:
    """Settle and record a finished run with what its steps used, whatever its outcome."""
    if meter is not None:
        run = finished.run
        await meter.done(
            finished.usage, status=run.status.value, run_id=run.id, session_id=run.session_id
        )


class RunMeters:
    """Settles runs that finish after their request has been answered (background mode)."""

    def __init__(self, finished: Callable[..., Awaitable[RunFinished]]) -> None:
        """``finished(run_id, tenant=…)``: waits for the run (``AgentService.finished``)."""
        self._finished = finished
        self._tasks: set[asyncio.Task[None]] = set()

    def watch(self, meter: Meter | None, run_id: str, tenant: str) -> None:
        if meter is None:
            return
        task = asyncio.ensure_future(self._settle(meter, run_id, tenant))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, meter: Meter, run_id: str, tenant: str) -> None:
        try:
            finished = await self._finished(run_id, tenant=tenant)
        except WayportError:
            await meter.done(None, status="failed", run_id=run_id)
            return
        await run_done(meter, finished)
