"""Budgets, rate limits and the usage ledger over real HTTP: a real uvicorn server, a scripted
model that reports usage, budgets and the ledger on a real SQLite database."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from wayport.core.agent import AgentSpec
from wayport.core.limits import Ask, Limits, Subject, plan
from wayport.core.pricing import Price, PriceTable
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.session import DEFAULT_TENANT
from wayport.core.types import Usage
from wayport.models.router import Router
from wayport.runtime.limiter import LocalLimiter
from wayport.server.app import create_app
from wayport.server.auth import BOOTSTRAP_OWNER
from wayport.server.settings import ServerSettings
from wayport.service.agents import AgentCatalog, AgentService
from wayport.service.gateway import Gateway
from wayport.service.limits import LimitPolicy, LimitsService
from wayport.service.metering import Metering
from wayport.service.usage import UsageService
from wayport.store import open_store
from wayport.store.budgets import SqlLimiter
from wayport.store.sql import SqlStore
from wayport.store.usage import SqlUsageStore
from wayport.telemetry.metrics import Metrics
from wayport.testing import ManualClock, ScriptedBackend
from wayport.testing.models import Reply

from .helpers import AUTH, KEY, serve

pytestmark = pytest.mark.anyio

PRICE = Price(input=1000.0, output=1000.0)  # a tenth of a cent a token: easy sums
USED = Usage(prompt_tokens=4, completion_tokens=6)  # what the model reports: $0.01


@dataclass
class Stack:
    url: str
    store: SqlStore
    limits: LimitsService
    usage: UsageService
    metrics: Metrics


@asynccontextmanager
async def stack(
    tmp_path: Path, by_scope: dict[str, dict[str, Limits]], *, clock: ManualClock | None = None
) -> AsyncIterator[Stack]:
    """With ``clock``, every model answer waits until the test advances it."""
    backend = ScriptedBackend(
        "chat-1",
        default=Reply("one two three", usage=USED),
        delay=1.0 if clock is not None else 0.0,
        clock=clock,
    )
    metrics = Metrics()
    router = Router(
        groups=[ModelGroup(name="chat", deployments=(WeightedDeployment(name="chat"),))],
        backends={"chat": backend},
        policy=RouterPolicy(max_retries=0),
    )
    gateway = Gateway(router=router, observer=metrics)
    store = await open_store(None, state_dir=tmp_path)
    agents = AgentService(
        catalog=AgentCatalog([AgentSpec(name="helper", model="chat")]),
        model=gateway,
        open_stores=lambda: open_store(None, state_dir=tmp_path / "agents"),
    )
    limits = LimitsService(
        policy=LimitPolicy(by_scope),
        prices=PriceTable({"chat": PRICE}),
        limiter=LocalLimiter(),
        budgets=SqlLimiter(store.db),
    )
    usage = UsageService(store=SqlUsageStore(store.db), observer=metrics)
    settings = ServerSettings(api_key=KEY, access_log=False, version="9.9.9")
    app = create_app(
        gateway=gateway,
        settings=settings,
        metrics=metrics,
        agents=agents,
        metering=Metering(limits=limits, usage=usage),
    )
    try:
        async with serve(app) as url:
            yield Stack(url=url, store=store, limits=limits, usage=usage, metrics=metrics)
    finally:
        await store.close()


def chat(max_tokens: int = 10, **extra: object) -> dict[str, object]:
    return {
        "model": "chat",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }


async def test_parallel_requests_overspend_by_at_most_one_request(tmp_path: Path) -> None:
    """100 requests at once against a budget with room for two worst cases: the budget ends
    within one request's maximum cost of its limit, and the refused get 429 + Retry-After."""
    day = Limits(spend_per_day=1.0)
    async with stack(tmp_path, {"tenant": {"*": day}}) as s:
        # the budget is nearly spent already
        now = s.limits._wall()
        [spent] = plan([(Subject("tenant", DEFAULT_TENANT), day)], Ask(cost=0.9), now)
        await SqlLimiter(s.store.db).adjust(DEFAULT_TENANT, [(spent, 0.9)], now=now)
        limits = httpx.Limits(max_connections=100)
        # the last of 100 requests waits for the others (httpx's default 5 s is tight for
        # that on a loaded machine; 0.6 s on a quiet one)
        async with httpx.AsyncClient(
            base_url=s.url, headers=AUTH, limits=limits, timeout=60
        ) as client:
            answers = await asyncio.gather(
                *(client.post("/v1/chat/completions", json=chat()) for _ in range(100))
            )
            size = len(json.dumps(chat()).encode())
            held = await s.limits.admit(
                BOOTSTRAP_OWNER, model="chat", max_tokens=10, prompt_chars=size, messages=1
            )
            await s.limits.settle(held, None)
            max_cost = held.max_cost
            ok = [a for a in answers if a.status_code == 200]
            refused = [a for a in answers if a.status_code == 429]
            assert len(ok) + len(refused) == 100
            assert ok and refused
            for r in refused:
                assert r.json()["error"]["code"] == "budget_exceeded"
                assert int(r.headers["retry-after"]) > 0
            total = await SqlLimiter(s.store.db).used(DEFAULT_TENANT, spent, now=now)
            assert total <= 1.0 + max_cost
            assert total == pytest.approx(0.9 + 0.01 * len(ok))  # settled at the real cost
            report = (await client.get("/v1/usage", params={"group_by": "model"})).json()
            assert report["data"][0]["group"] == "chat"
            assert report["data"][0]["requests"] == len(ok)
            assert report["total"]["cost"] == pytest.approx(0.01 * len(ok))


async def test_requests_per_minute_per_key(tmp_path: Path) -> None:
    async with stack(tmp_path, {"key": {"*": Limits(rpm=2)}}) as s:  # noqa: SIM117 - the server outlives the client
        async with httpx.AsyncClient(base_url=s.url, headers=AUTH) as client:
            for _ in range(2):
                r = await client.post("/v1/chat/completions", json=chat())
                assert r.status_code == 200, r.text
            r = await client.post("/v1/chat/completions", json=chat())
            assert r.status_code == 429
            body = r.json()["error"]
            assert (body["type"], body["code"]) == ("rate_limit_error", "rate_limit_exceeded")
            assert "2 requests per minute" in body["message"]
            assert 1 <= int(r.headers["retry-after"]) <= 30


async def test_tokens_per_minute_refund_the_unused_estimate(tmp_path: Path) -> None:
    # each request reserves its prompt estimate + max_tokens, then gives back what it did not
    # use: far more requests pass than the worst case alone would allow
    async with stack(tmp_path, {"tenant": {"*": Limits(tpm=200)}}) as s:  # noqa: SIM117 - the server outlives the client
        async with httpx.AsyncClient(base_url=s.url, headers=AUTH) as client:
            statuses = [
                (await client.post("/v1/chat/completions", json=chat(max_tokens=50))).status_code
                for _ in range(10)
            ]
            assert statuses == [200] * 10
            r = await client.post("/v1/chat/completions", json=chat(max_tokens=500))
            assert r.status_code == 429 and "lower max_tokens" in r.json()["error"]["message"]


async def test_streams_are_settled_and_recorded(tmp_path: Path) -> None:
    async with stack(tmp_path, {"tenant": {"*": Limits(spend_per_month=5.0)}}) as s:  # noqa: SIM117 - the server outlives the client
        async with httpx.AsyncClient(base_url=s.url, headers=AUTH) as client:
            async with client.stream(
                "POST", "/v1/chat/completions", json=chat(stream=True)
            ) as response:
                assert response.status_code == 200
                body = b"".join([part async for part in response.aiter_bytes()])
            assert b"[DONE]" in body
            report = (await client.get("/v1/usage?group_by=key")).json()
    [row] = report["data"]
    assert (row["group"], row["requests"]) == (BOOTSTRAP_OWNER.key_id, 1)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (4, 6)
    assert row["cost"] == pytest.approx(0.01)
    rendered = s.metrics.render()[0].decode()
    assert 'wayport_usage_cost_dollars_total{agent="",model="chat"} 0.01' in rendered


async def test_agent_runs_hold_a_concurrent_slot(tmp_path: Path) -> None:
    async with stack(tmp_path, {"agent": {"helper": Limits(concurrent_runs=1)}}) as s:  # noqa: SIM117 - the server outlives the client
        async with httpx.AsyncClient(base_url=s.url, headers=AUTH) as client:
            r = await client.post("/v1/sessions", json={"agent": "helper"})
            session = r.json()["id"]
            r = await client.post(f"/v1/sessions/{session}/runs", json={"input": "hi"})
            assert r.status_code == 200, r.text
            # the run finished: its slot is free again
            r = await client.post(f"/v1/sessions/{session}/runs", json={"input": "again"})
            assert r.status_code == 200, r.text
            r = await client.post(
                "/v1/chat/completions",
                json={"model": "agent/helper", "messages": [{"role": "user", "content": "x"}]},
            )
            assert r.status_code == 200, r.text
            report = (await client.get("/v1/usage?group_by=agent")).json()
    [row] = report["data"]
    assert (row["group"], row["runs"], row["requests"]) == ("helper", 3, 0)
    assert row["cost"] == pytest.approx(0.03)


async def test_a_run_in_flight_blocks_the_next(tmp_path: Path) -> None:
    clock = ManualClock()
    async with stack(tmp_path, {"agent": {"helper": Limits(concurrent_runs=1)}}, clock=clock) as s:  # noqa: SIM117 - the server outlives the client
        async with httpx.AsyncClient(base_url=s.url, headers=AUTH) as client:
            sessions = [
                (await client.post("/v1/sessions", json={"agent": "helper"})).json()["id"]
                for _ in range(2)
            ]
            r = await client.post(
                f"/v1/sessions/{sessions[0]}/runs", json={"input": "hi", "mode": "background"}
            )
            assert r.status_code == 202
            r = await client.post(f"/v1/sessions/{sessions[1]}/runs", json={"input": "hi"})
            assert r.status_code == 429
            assert "1 concurrent runs for agent helper" in r.json()["error"]["message"]
            await _until(lambda: _sleepers(clock), 1)  # the first run waits on its model
            clock.advance(1.0)
            await _until(lambda: _runs_recorded(s), 1)
            r = await client.post(
                f"/v1/sessions/{sessions[1]}/runs", json={"input": "hi", "mode": "background"}
            )
            assert r.status_code == 202, r.text
            await _until(lambda: _sleepers(clock), 1)
            clock.advance(1.0)  # lets it finish before the server stops


async def _runs_recorded(s: Stack) -> int:
    return sum(t.runs for t in await s.usage.totals(DEFAULT_TENANT, group_by="tenant"))


async def _sleepers(clock: ManualClock) -> int:
    return clock.pending_sleepers


async def _until(read: Callable[[], object], want: int) -> None:
    deadline = time.monotonic() + 30  # polling for a condition; the bound only ends a hang
    while (got := await read()) < want:  # type: ignore[misc]
        assert time.monotonic() < deadline, f"never reached {want} (got {got})"
        await asyncio.sleep(0.01)


async def test_usage_query_validation(tmp_path: Path) -> None:
    async with stack(tmp_path, {}) as s, httpx.AsyncClient(base_url=s.url) as client:
        assert (await client.get("/v1/usage")).status_code == 401
        client.headers.update(AUTH)
        r = await client.get("/v1/usage?group_by=colour")
        assert r.status_code == 400 and r.json()["error"]["param"] == "group_by"
        r = await client.get("/v1/usage?since=yesterday")
        assert r.status_code == 400 and r.json()["error"]["param"] == "since"
        await client.post("/v1/chat/completions", json=chat())
        r = await client.get("/v1/usage?group_by=day&since=2020-01-01&until=2999-01-01")
        assert r.status_code == 200 and r.json()["total"]["requests"] == 1
        r = await client.get("/v1/usage?until=2020-01-01T00:00:00Z")
        assert r.json()["data"] == []
