"""The ``ReleaseStore`` contract on memory, SQLite and Postgres: compare-and-set rollouts,
events newest first, signal slices merged across replicas, one vote per run, newest evals,
tenants apart."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest

from scratch_db import scratch_postgres
from wayport.core.agent import AgentSpec
from wayport.core.errors import Conflict
from wayport.core.release import Kind, Phase, RolloutState, Strategy
from wayport.core.release_codec import strategy_from_dict
from wayport.core.release_records import EvalResult, Feedback
from wayport.core.release_signals import Aggregate
from wayport.ports import ReleaseStore
from wayport.store import open_store
from wayport.store.releases import SqlReleaseStore
from wayport.testing.releases import MemoryReleaseStore
from wayport.testing.stores import MemoryStores

pytestmark = pytest.mark.anyio

STRATEGY = strategy_from_dict({"steps": [{"set_weight": 10}, {"pause": {"seconds": 30}}]})


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with scratch_postgres() as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('rel') / 'wayport.db'}"
    return "memory"


@pytest.fixture
async def pair(url: str) -> AsyncIterator[tuple[ReleaseStore, object]]:
    """The release store and the run store it lists versions from."""
    if url == "memory":
        memory = MemoryStores()
        yield MemoryReleaseStore(stores=memory), memory.runs
        return
    sql = await open_store(url)
    try:
        yield SqlReleaseStore(sql.db), sql.runs
    finally:
        await sql.close()


def state(**changes: object) -> RolloutState:
    base = RolloutState(
        agent="support", stable="a1", candidate="b2", kind=Kind.CANARY, phase=Phase.PROGRESSING
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def test_rollouts_change_by_compare_and_set(
    pair: tuple[ReleaseStore, object], tenant: str
) -> None:
    store, _ = pair
    assert await store.rollout(tenant, "support") is None
    first = await store.put_rollout(
        tenant, state(), STRATEGY, expected=None, window_start=10.0, now=10.0
    )
    assert (first.revision, first.window_start, first.strategy) == (1, 10.0, STRATEGY)
    with pytest.raises(Conflict):  # one rollout in progress per agent
        await store.put_rollout(tenant, state(), STRATEGY, expected=None, window_start=0, now=0)
    second = await store.put_rollout(
        tenant, state(weight=10, step=1), STRATEGY, expected=1, window_start=20.0, now=20.0
    )
    assert second.revision == 2 and second.state.weight == 10
    with pytest.raises(Conflict):  # a replica that read revision 1 lost the race
        await store.put_rollout(
            tenant, state(weight=50), STRATEGY, expected=1, window_start=0, now=0
        )
    loaded = await store.rollout(tenant, "support")
    assert loaded is not None and loaded.state == state(weight=10, step=1)
    done = await store.put_rollout(
        tenant, state(phase=Phase.PROMOTED), STRATEGY, expected=2, window_start=0, now=30
    )
    # a finished rollout makes room for the next one
    again = await store.put_rollout(
        tenant, state(candidate="c3"), Strategy(), expected=None, window_start=40, now=40
    )
    assert again.revision == done.revision + 1 and again.state.candidate == "c3"
    assert [r.state.agent for r in await store.rollouts(tenant)] == ["support"]
    assert await store.rollouts(f"{tenant}-other") == []


async def test_events_newest_first(pair: tuple[ReleaseStore, object], tenant: str) -> None:
    store, _ = pair
    for at, name in enumerate(["progressing", "step", "promoted"]):
        await store.add_event(tenant, "support", name, {"at": at}, at=float(at))
    events = await store.events(tenant, "support", limit=2)
    assert [(e.event, e.detail) for e in events] == [("promoted", {"at": 2}), ("step", {"at": 1})]
    assert await store.events(f"{tenant}-other", "support") == []


async def test_signals_merge_replicas_within_the_window(
    pair: tuple[ReleaseStore, object], tenant: str
) -> None:
    store, _ = pair

    def runs(n: int, errors: int, ms: float) -> Aggregate:
        part = Aggregate()
        for i in range(n):
            part.add_run(error=i < errors, latency_ms=ms, ttft_ms=ms / 2, cost=0.01)
        part.add_tool(failed=True)
        return part

    await store.add_signals(tenant, [("support", "b2", 0.0, runs(50, 50, 10))], replica="r1")
    await store.add_signals(tenant, [("support", "b2", 10.0, runs(10, 1, 100))], replica="r1")
    await store.add_signals(tenant, [("support", "b2", 10.0, runs(10, 1, 100))], replica="r1")
    await store.add_signals(tenant, [("support", "b2", 20.0, runs(20, 0, 1000))], replica="r2")
    total = await store.signals(tenant, "support", "b2", since=10.0)
    s = total.signals()
    assert (s.requests, s.errors, s.tool_calls, s.tool_failures) == (40, 2, 3, 3)
    assert s.cost == pytest.approx(0.4)
    assert s.p95_latency_ms is not None and 900 <= s.p95_latency_ms <= 1100
    assert (await store.signals(tenant, "support", "a1", since=0)).requests == 0
    assert (await store.signals(f"{tenant}-x", "support", "b2", since=0)).requests == 0


async def test_one_vote_per_run(pair: tuple[ReleaseStore, object], tenant: str) -> None:
    store, _ = pair
    vote = Feedback(run_id="r1", agent="support", version="b2", score=1, comment=None, at=5.0)
    await store.add_feedback(tenant, vote)
    await store.add_feedback(tenant, replace(vote, score=-1, comment="changed my mind"))
    await store.add_feedback(tenant, replace(vote, run_id="r2"))
    await store.add_feedback(tenant, replace(vote, run_id="r3", at=1.0))
    assert await store.feedback_counts(tenant, "support", "b2", since=2.0) == (1, 1)
    assert await store.feedback_counts(tenant, "support", "a1", since=0.0) == (0, 0)


async def test_newest_eval_per_version_and_suite(
    pair: tuple[ReleaseStore, object], tenant: str
) -> None:
    store, _ = pair
    assert await store.latest_eval(tenant, "support", "b2") is None
    for i, (suite, score) in enumerate([("smoke", 0.5), ("smoke", 1.0), ("full", 0.25)]):
        await store.add_eval(
            tenant,
            EvalResult(
                id=f"ev-{i}",
                agent="support",
                suite=suite,
                version="b2",
                score=score,
                results=[{"case": "c1", "passed": score == 1.0}],
                at=float(i),
            ),
        )
    newest = await store.latest_eval(tenant, "support", "b2")
    assert newest is not None and (newest.suite, newest.score) == ("full", 0.25)
    smoke = await store.latest_eval(tenant, "support", "b2", suite="smoke")
    assert smoke is not None and smoke.score == 1.0 and smoke.results[0]["passed"] is True


async def test_versions_are_the_pinned_definitions(
    pair: tuple[ReleaseStore, object], tenant: str
) -> None:
    store, runs = pair
    a = AgentSpec(name="support", model="m", instructions="one")
    b = replace(a, instructions="two")
    for spec in (a, b, AgentSpec(name="other", model="m")):
        await runs.pin_agent(tenant, spec)  # type: ignore[attr-defined]
    listed = await store.versions(tenant, "support")
    assert {v.version for v in listed} == {a.version, b.version}
    assert await store.versions(f"{tenant}-x", "support") == []
