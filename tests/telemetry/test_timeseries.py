"""The console's per-minute ring: counts, p95, tokens through the context, tenants apart."""

from __future__ import annotations

import asyncio

import pytest

from wayport.telemetry.timeseries import Tee, Timeseries


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def request(
    series: Timeseries,
    *,
    tenant: str = "t1",
    status: int = 200,
    seconds: float = 0.1,
    tokens: tuple[int, int] = (0, 0),
) -> None:
    started = series.begin()
    if tokens != (0, 0):
        series.tokens("m", *tokens)
    series.end(
        started,
        tenant=tenant,
        request_id="req-1",
        method="POST",
        route="/v1/chat/completions",
        model="m",
        status=status,
        seconds=seconds,
    )


def test_minutes_count_requests_errors_tokens_and_p95() -> None:
    clock = Clock()
    series = Timeseries(minutes=10, clock=clock)
    for _ in range(19):
        request(series, seconds=0.02, tokens=(10, 5))
    request(series, status=503, seconds=4.0)
    request(series, status=404, seconds=3.0)
    clock.now += 60
    request(series, seconds=0.3)
    points = series.points("t1", minutes=3)
    assert [p["requests"] for p in points] == [0, 21, 1]
    first = points[1]
    assert first["errors"] == 1 and first["client_errors"] == 1
    assert (first["tokens_in"], first["tokens_out"]) == (190, 95)
    # 19 of 21 answers took 20 ms: the p95 lies in the bucket of the two slow ones (2.5-5 s).
    assert 2500 <= first["p95_ms"] <= 5000
    assert 250 <= points[2]["p95_ms"] <= 500
    assert points[0]["p95_ms"] is None
    summary = series.summary("t1", minutes=3)
    assert summary["requests"] == 22
    assert summary["completion_rate"] is None


def test_the_ring_forgets_old_minutes_and_tenants_stay_apart() -> None:
    clock = Clock()
    series = Timeseries(minutes=3, recent=2, clock=clock)
    for _ in range(5):
        request(series, tenant="a")
        clock.now += 60
    request(series, tenant="b", tokens=(1, 1))
    assert series.summary("a", minutes=60)["requests"] == 3  # the ring keeps three minutes
    assert series.summary("b")["requests"] == 1
    assert series.recent("c") == []
    assert series.points("c", minutes=2) == [
        {**p, "t": p["t"]} for p in series.points("c", minutes=2)
    ]
    assert sum(p["requests"] for p in series.points("c", minutes=60)) == 0
    assert len(series.recent("a", limit=10)) == 2  # the recent list is bounded too
    assert series.recent("b")[0]["tokens_in"] == 1


def test_runs_escalations_and_cost_make_the_task_rates() -> None:
    series = Timeseries(clock=Clock())
    for status in ("completed", "completed", "completed", "failed"):
        series.run_finished("t", status)
    series.escalation("t")
    series.cost("t", 0.02)
    summary = series.summary("t")
    assert summary["completion_rate"] == 0.75
    assert summary["escalations"] == 1
    assert summary["cost_per_task"] == pytest.approx(0.005)


@pytest.mark.anyio
async def test_tokens_land_on_the_request_of_their_own_task() -> None:
    series = Timeseries(clock=Clock())

    async def one(n: int) -> None:
        started = series.begin()
        await asyncio.sleep(0)
        series.tokens("m", n, n)
        await asyncio.sleep(0)
        series.end(
            started,
            tenant="t",
            request_id=f"req-{n}",
            method="POST",
            route="/r",
            model="m",
            status=200,
            seconds=0.01,
        )

    await asyncio.gather(one(1), one(2), one(3))
    by_id = {r["request_id"]: r["tokens_in"] for r in series.recent("t")}
    assert by_id == {"req-1": 1, "req-2": 2, "req-3": 3}
    # Outside any request, tokens are charged to the run's tenant, if one is set.
    series.tokens("m", 100, 0)
    with series.for_tenant("other"):
        series.tokens("m", 7, 3)
    assert series.summary("other")["tokens_in"] == 7
    assert series.summary("t")["tokens_in"] == 6


def test_a_run_inside_a_request_is_charged_once_and_shown_on_the_request() -> None:
    series = Timeseries(clock=Clock())
    started = series.begin()
    series.tokens("m", 1, 1)  # the request's own model call
    with series.for_tenant("t"):
        series.tokens("m", 10, 20)  # the agent run it started
    assert series.summary("t")["tokens_in"] == 10  # the run is charged at once
    series.end(
        started,
        tenant="t",
        request_id="req-1",
        method="POST",
        route="/r",
        model="",
        status=200,
        seconds=0.01,
    )
    assert series.summary("t")["tokens_in"] == 11
    assert series.summary("t")["tokens_out"] == 21
    assert series.recent("t")[0]["tokens_out"] == 21
    # A background run that outlives its request still reaches the minute.
    with series.for_tenant("t"):
        series.tokens("m", 5, 5)
    assert series.summary("t")["tokens_in"] == 16


def test_tee_reports_to_every_observer() -> None:
    a, b = Timeseries(clock=Clock()), Timeseries(clock=Clock())
    tee = Tee(a, b)
    with a.for_tenant("x"), b.for_tenant("x"):
        tee.tokens("m", 2, 3)
        tee.first_token("m", 0.1)
    assert a.summary("x")["tokens_out"] == b.summary("x")["tokens_out"] == 3
