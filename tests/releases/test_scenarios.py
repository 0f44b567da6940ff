"""Release scenarios on the real harness (SQLite, scripted backends, a manual clock): a good
candidate walks through every step of a multi-step canary to promotion; a candidate failing
half of its requests at 10 % weight is rolled back by the reconciler alone, and no user sees
an error because each failed candidate request is retried on stable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from wayport.core.errors import BackendUnavailable
from wayport.core.release import Phase
from wayport.core.release_codec import strategy_from_dict
from wayport.core.types import ChatRequest
from wayport.testing.models import Fail, Step

from .conftest import STABLE, Env, instructions

pytestmark = pytest.mark.anyio


def _analysis(min_requests: int) -> dict[str, object]:
    return {
        "analysis": {
            "conditions": ["error_rate <= 0.05"],
            "min_requests": min_requests,
            "interval": 10,
        }
    }


MULTI_STEP = strategy_from_dict(
    {
        "kind": "canary",
        "steps": [
            {"set_weight": 10},
            _analysis(3),
            {"set_weight": 25},
            _analysis(5),
            {"set_weight": 50},
            {"pause": {"seconds": 30}},
            {"set_weight": 75},
            _analysis(5),
        ],
    }
)


class FlakyEnv(Env):
    """``Env`` whose versions with instructions starting ``flaky`` fail every other call
    (the model unavailable: retriable, before any byte)."""

    def __init__(self, state: Path) -> None:
        self.flaky_calls = 0
        super().__init__(state)

    def _answer(self, request: ChatRequest) -> Step:
        if instructions(request).startswith("flaky"):
            self.flaky_calls += 1
            if self.flaky_calls % 2:
                return Fail(BackendUnavailable("flaky is down"))
        return super()._answer(request)


@pytest.fixture
async def flaky(tmp_path: Path) -> AsyncIterator[FlakyEnv]:
    made = FlakyEnv(tmp_path)
    await made.good.start()
    await made.bad.start()
    await made.agents.start()
    try:
        yield made
    finally:
        await made.releases.drain()
        await made.agents.close()


async def _weight_and_phase(env: Env) -> tuple[int, Phase]:
    rollout = await env.releases.store.rollout("default", "support")
    assert rollout is not None
    return rollout.state.weight, rollout.state.phase


async def test_a_good_candidate_is_promoted_through_every_step_in_order(env: Env) -> None:
    good = replace(STABLE, instructions="v2")
    await env.releases.create("default", "support", spec=good, strategy=MULTI_STEP)
    seen: list[tuple[int, Phase]] = []
    users = iter(range(10_000))

    async def traffic(n: int) -> set[str]:
        return {await env.ask(f"user-{next(users)}") for _ in range(n)}

    await env.reconciler.tick()  # set_weight 10, then the first analysis waits
    seen.append(await _weight_and_phase(env))
    answers = await traffic(100)
    await env.tick(5)  # not due yet: an analysis waits its interval
    assert await _weight_and_phase(env) == (10, Phase.PROGRESSING)
    await env.tick(5)  # passes: set_weight 25, the next analysis waits
    seen.append(await _weight_and_phase(env))
    answers |= await traffic(60)
    await env.tick(10)  # passes: set_weight 50, then a 30 s pause
    seen.append(await _weight_and_phase(env))
    await env.tick(20)
    assert await _weight_and_phase(env) == (50, Phase.PROGRESSING)  # still pausing
    answers |= await traffic(20)
    await env.tick(10)  # the pause is over: set_weight 75, the last analysis waits
    seen.append(await _weight_and_phase(env))
    answers |= await traffic(30)
    await env.tick(10)  # the last step passes: promoted
    seen.append(await _weight_and_phase(env))

    assert seen == [
        (10, Phase.PROGRESSING),
        (25, Phase.PROGRESSING),
        (50, Phase.PROGRESSING),
        (75, Phase.PROGRESSING),
        (100, Phase.PROMOTED),
    ]
    assert answers == {"v1", "v2"}
    events = await env.releases.store.events("default", "support")
    oldest_first = [(e.event, e.detail["weight"]) for e in reversed(events)]
    steps = [
        (e.detail["detail"], e.detail["weight"]) for e in reversed(events) if e.event == "step"
    ]
    # every step reached is announced, in order: each set_weight (odd steps) and each analysis
    # or pause passed (even steps; the next set_weight took effect in the same pass)
    assert steps == [
        ("step 1", 10),
        ("step 2", 25),
        ("step 3", 25),
        ("step 4", 50),
        ("step 5", 50),
        ("step 6", 75),
        ("step 7", 75),
        ("step 8", 100),
    ]
    assert oldest_first[0][0] == "progressing" and oldest_first[-1] == ("promoted", 100)
    assert not any(event in ("rolled_back", "analysis_failed") for event, _ in oldest_first)
    assert {await env.ask(f"late-{i}") for i in range(10)} == {"v2"}


async def test_a_half_failing_candidate_at_10_percent_is_rolled_back_with_no_user_error(
    flaky: FlakyEnv,
) -> None:
    broken = replace(STABLE, instructions="flaky v2")
    await flaky.releases.create("default", "support", spec=broken, strategy=MULTI_STEP)
    await flaky.reconciler.tick()
    assert await _weight_and_phase(flaky) == (10, Phase.PROGRESSING)

    answers: list[str] = []
    for i in range(200):
        answers.append(await flaky.ask(f"user-{i}"))  # asserts each run completed
    # half the candidate's calls failed; each was answered by stable instead
    assert flaky.flaky_calls >= 6
    assert answers.count("flaky v2") == flaky.flaky_calls // 2
    assert answers.count("v1") == 200 - flaky.flaky_calls // 2

    await flaky.tick(10)  # the analysis is due: error_rate about 0.5 > 0.05
    weight, phase = await _weight_and_phase(flaky)
    assert (weight, phase) == (0, Phase.ROLLED_BACK)
    rollout = await flaky.releases.store.rollout("default", "support")
    assert rollout is not None and "error_rate" in rollout.state.reason
    assert rollout.state.stable == STABLE.version
    events = [e.event for e in await flaky.releases.store.events("default", "support")]
    assert events[0] == "rolled_back" and "promoted" not in events

    calls = flaky.flaky_calls
    assert {await flaky.ask(f"user-{i}") for i in range(200)} == {"v1"}
    assert flaky.flaky_calls == calls  # the rolled-back candidate gets nothing any more
