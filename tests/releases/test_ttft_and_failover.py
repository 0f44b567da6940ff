"""Time to first token per version, and what a failed-over run records: real runs on SQLite,
scripted backends, the signals' monotonic clock advanced by the model itself."""

from __future__ import annotations

from dataclasses import replace

import pytest

from wayport.core.release import Phase, Strategy
from wayport.core.release_codec import strategy_from_dict

from .conftest import STABLE, Env, user

pytestmark = pytest.mark.anyio


def _canary(condition: str) -> Strategy:
    return strategy_from_dict(
        {
            "kind": "canary",
            "steps": [
                {"set_weight": 50},
                {"analysis": {"conditions": [condition], "min_requests": 5, "interval": 10}},
            ],
        }
    )


async def test_a_slow_first_token_rolls_the_candidate_back(env: Env) -> None:
    slow = replace(STABLE, instructions="slow-start v2")
    strategy = _canary("p95_ttft_ms <= 1000")
    await env.releases.create("default", "support", spec=slow, strategy=strategy)
    await env.reconciler.tick()  # set_weight 50
    answers = [await env.ask(f"user-{i}") for i in range(30)]
    assert {"v1", "slow-start v2"} == set(answers)  # nobody failed: only slow to start
    status = await env.releases.status("default", "support")
    ttft = status["comparison"]["p95_ttft_ms"]
    assert 2000 <= ttft["candidate"] <= 2200  # histogram buckets are 10 % wide
    assert ttft["stable"] is not None and ttft["stable"] <= 1.0
    await env.tick(10)
    rollout = await env.releases.store.rollout("default", "support")
    assert rollout is not None
    assert rollout.state.phase is Phase.ROLLED_BACK, rollout.state.reason
    assert "p95_ttft_ms" in rollout.state.reason


async def test_a_fast_first_token_passes_the_same_check(env: Env) -> None:
    fast = replace(STABLE, instructions="v2")
    strategy = _canary("p95_ttft_ms <= 1000")
    await env.releases.create("default", "support", spec=fast, strategy=strategy)
    await env.reconciler.tick()
    for i in range(30):
        await env.ask(f"user-{i}")
    await env.tick(10)
    rollout = await env.releases.store.rollout("default", "support")
    assert rollout is not None and rollout.state.phase is Phase.PROMOTED, rollout.state.reason


async def test_a_failed_over_run_records_both_versions_and_feedback_goes_to_stable(
    env: Env,
) -> None:
    bad = replace(STABLE, model="bad", instructions="v2")
    strategy = strategy_from_dict({"kind": "blue_green"})
    made = await env.releases.create("default", "support", spec=bad, strategy=strategy)
    candidate = made.state.candidate
    assert candidate is not None
    session = await env.agents.create_session("support", preview="1")
    assert session.agent_version == candidate
    run = await env.agents.submit(session.id, user(), preview="1")
    done = await env.agents.finished(run.id)
    assert done.run.status.value == "completed", done.run.error
    assert done.run.output == {
        "content": "v1",
        "failover": {"attempted": candidate, "answered_by": STABLE.version},
    }
    stored = await env.agents.run(run.id)
    assert stored.output == done.run.output  # durable, not only the live event
    feedback = await env.releases.feedback("default", run.id, score=1)
    assert feedback.version == STABLE.version
    assert await env.releases.store.feedback_counts(
        "default", "support", STABLE.version, since=0
    ) == (1, 0)
    assert await env.releases.store.feedback_counts("default", "support", candidate, since=0) == (
        0,
        0,
    )


async def test_a_run_answered_by_its_own_version_records_no_failover(env: Env) -> None:
    session = await env.agents.create_session("support")
    run = await env.agents.submit(session.id, user())
    done = await env.agents.finished(run.id)
    assert done.run.output == {"content": "v1"}
