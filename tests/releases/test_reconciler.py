"""The reconciler across replicas: two release services on one database decide on the same
rollout; compare-and-set lets one of them apply each step, and both route the same way after.
An eval step waits for the candidate's newest eval score."""

from __future__ import annotations

from dataclasses import replace

import pytest

from wayport.core.errors import Conflict
from wayport.core.ids import new_id
from wayport.core.release import Phase, decide
from wayport.core.release_codec import strategy_from_dict
from wayport.core.release_records import EvalResult
from wayport.service.release_reconciler import Reconciler
from wayport.service.releases import ReleaseService
from wayport.store.releases import SqlReleaseStore

from .conftest import STABLE, Env

pytestmark = pytest.mark.anyio


async def test_two_replicas_agree_through_compare_and_set(env: Env) -> None:
    other = ReleaseService(
        agents=env.agents,
        store=lambda: SqlReleaseStore(env.sql.db),
        wall=env.clock.now,
        cache_seconds=0.0,
    )
    strategy = strategy_from_dict(
        {
            "steps": [
                {"set_weight": 20},
                {"pause": {"seconds": 60}},
                {"set_weight": 60},
                {"pause": {}},
            ]
        }
    )
    candidate = replace(STABLE, instructions="v2")
    await env.releases.create("default", "support", spec=candidate, strategy=strategy)
    first, second = Reconciler(env.releases), Reconciler(other)
    # both read revision 1; the second one's write finds revision 2 and steps aside
    rollout = await env.releases.store.rollout("default", "support")
    assert rollout is not None
    observed = await other.observe("default", rollout, env.clock.now())
    assert await first.tick() == 1
    late = decide(rollout.strategy, rollout.state, observed)
    with pytest.raises(Conflict, match="changed meanwhile"):
        await other.apply("default", rollout, late, env.clock.now())
    assert await second.tick() == 0  # nothing left to do: paused for 60 s
    env.clock.advance(60)
    assert await second.tick() == 1
    assert await first.tick() == 0
    saved = await other.store.rollout("default", "support")
    assert saved is not None and saved.state.weight == 60
    assert saved.state.phase is Phase.PAUSED  # until a human promotes


async def test_an_eval_step_waits_for_a_passing_score(env: Env) -> None:
    strategy = strategy_from_dict(
        {"steps": [{"set_weight": 10}, {"eval": {"suite": "smoke", "min_score": 0.8}}]}
    )
    candidate = replace(STABLE, instructions="v2")
    await env.releases.create("default", "support", spec=candidate, strategy=strategy)
    await env.reconciler.tick()
    rollout = await env.releases.store.rollout("default", "support")
    assert rollout is not None and rollout.state.phase is Phase.PROGRESSING  # no score yet

    async def scored(score: float, suite: str = "smoke") -> None:
        await env.releases.store.add_eval(
            "default",
            EvalResult(
                id=new_id("eval"),
                agent="support",
                suite=suite,
                version=candidate.version,
                score=score,
                results=[],
                at=env.clock.now(),
            ),
        )
        env.clock.advance(1)

    await scored(1.0, suite="other")  # another suite's score does not count
    await env.reconciler.tick()
    rollout = await env.releases.store.rollout("default", "support")
    assert rollout is not None and rollout.state.phase is Phase.PROGRESSING
    await scored(0.9)
    await env.reconciler.tick()
    rollout = await env.releases.store.rollout("default", "support")
    assert rollout is not None and rollout.state.phase is Phase.PROMOTED
