"""Rollouts end to end: a service answering real runs (SQLite, scripted backends), releases
routing them, the reconciler deciding on the signals those runs produced."""

from __future__ import annotations

from dataclasses import replace

import pytest

from wayport.core.errors import Conflict, ReleaseError
from wayport.core.release import Command, Kind, Phase
from wayport.core.release_codec import strategy_from_dict

from .conftest import STABLE, Env, user

pytestmark = pytest.mark.anyio

CANARY = strategy_from_dict(
    {
        "kind": "canary",
        "steps": [
            {"set_weight": 50},
            {
                "analysis": {
                    "conditions": ["error_rate <= 0.1"],
                    "min_requests": 5,
                    "interval": 10,
                }
            },
        ],
    }
)


async def test_a_bad_canary_rolls_back_by_itself_and_no_user_sees_a_failure(env: Env) -> None:
    bad = replace(STABLE, model="bad", instructions="v2")
    await env.releases.create("default", "support", spec=bad, strategy=CANARY)
    await env.reconciler.tick()  # set_weight 50
    rollout = await env.releases.store.rollout("default", "support")
    assert rollout is not None and rollout.state.weight == 50
    answers = [await env.ask(f"user-{i}") for i in range(30)]
    # the candidate failed every time; each was retried on stable before any byte was sent
    assert set(answers) == {"v1"}
    assert len(env.bad.calls) > 0
    await env.tick(10)
    rollout = await env.releases.store.rollout("default", "support")
    assert rollout is not None
    assert rollout.state.phase is Phase.ROLLED_BACK, rollout.state.reason
    assert "error_rate" in rollout.state.reason
    events = [e.event for e in await env.releases.store.events("default", "support")]
    assert events[0] == "rolled_back" and "progressing" in events
    calls = len(env.bad.calls)
    assert {await env.ask(f"user-{i}") for i in range(10)} == {"v1"}
    assert len(env.bad.calls) == calls  # nobody is sent to the candidate any more


async def test_a_good_canary_is_promoted(env: Env) -> None:
    good = replace(STABLE, instructions="v2")
    await env.releases.create("default", "support", spec=good, strategy=CANARY)
    await env.reconciler.tick()
    answers = [await env.ask(f"user-{i}") for i in range(40)]
    assert set(answers) == {"v1", "v2"}  # both versions answered
    await env.tick(10)
    rollout = await env.releases.store.rollout("default", "support")
    assert rollout is not None
    assert rollout.state.phase is Phase.PROMOTED, rollout.state.reason
    assert rollout.state.stable == good.version and rollout.state.previous == STABLE.version
    assert {await env.ask(f"user-{i}") for i in range(10)} == {"v2"}
    status = await env.releases.status("default", "support")
    assert status["state"]["phase"] == "promoted"
    assert status["events"][0]["event"] == "promoted"


async def test_a_session_never_changes_version_mid_way(env: Env) -> None:
    pausing = strategy_from_dict({"steps": [{"set_weight": 50}, {"pause": {}}]})
    candidate = replace(STABLE, instructions="v2")
    await env.releases.create("default", "support", spec=candidate, strategy=pausing)
    await env.reconciler.tick()  # weight 50, then paused until promoted
    sessions = [await env.agents.create_session("support") for _ in range(16)]
    started = {s.id: s.agent_version for s in sessions}
    assert set(started.values()) == {STABLE.version, candidate.version}

    async def answers() -> dict[str, str]:
        out = {}
        for s in sessions:
            done = await env.agents.finished((await env.agents.submit(s.id, user())).id)
            out[s.id] = str(done.run.output["content"])  # type: ignore[index]
            assert done.run.agent_version == started[s.id]
        return out

    first = await answers()
    await env.releases.command("default", "support", Command.PROMOTE)  # past the pause: done
    rollout = await env.releases.store.rollout("default", "support")
    assert rollout is not None and rollout.state.phase is Phase.PROMOTED
    assert await answers() == first  # every session kept its version through the promotion
    fresh = await env.agents.create_session("support")
    assert fresh.agent_version == candidate.version


async def test_blue_green_preview_switch_and_instant_rollback(env: Env) -> None:
    green = replace(STABLE, instructions="green")
    saved = await env.releases.create(
        "default", "support", spec=green, strategy=strategy_from_dict({"kind": "blue-green"})
    )
    assert saved.state.kind is Kind.BLUE_GREEN and saved.state.phase is Phase.PAUSED
    assert {await env.ask(f"u{i}") for i in range(10)} == {"v1"}  # nobody sees green yet
    assert await env.ask("u1", preview="1") == "green"  # X-Wayport-Preview: 1
    assert await env.ask("u1", preview=green.version) == "green"  # X-Wayport-Version
    await env.releases.command("default", "support", Command.PROMOTE)  # the switch
    assert {await env.ask(f"u{i}") for i in range(10)} == {"green"}
    await env.releases.command("default", "support", Command.ROLLBACK)
    rollout = await env.releases.store.rollout("default", "support")
    assert rollout is not None and rollout.state.stable == STABLE.version
    assert {await env.ask(f"u{i}") for i in range(10)} == {"v1"}
    with pytest.raises(ReleaseError):
        await env.releases.command("default", "support", Command.ROLLBACK)


async def test_ab_split_is_sticky_per_user_and_reported_per_variant(env: Env) -> None:
    b = replace(STABLE, instructions="B")
    await env.releases.create(
        "default", "support", spec=b, strategy=strategy_from_dict({"kind": "ab", "split": 50})
    )
    first = {f"user-{i}": await env.ask(f"user-{i}") for i in range(30)}
    assert set(first.values()) == {"v1", "B"}
    again = {who: await env.ask(who) for who in first}
    assert again == first  # the same user gets the same variant every time
    await env.reconciler.tick()  # a human concludes an A/B test: no promotion by itself
    status = await env.releases.status("default", "support")
    requests = status["comparison"]["requests"]
    assert requests["candidate"] == 2 * list(first.values()).count("B")
    assert requests["stable"] == 2 * list(first.values()).count("v1")
    assert status["state"]["phase"] == "progressing"


async def test_shadow_never_sends_candidate_answers_nor_runs_side_effect_tools(
    env: Env,
) -> None:
    shadow = replace(STABLE, instructions="use-tool shadow")
    await env.releases.create(
        "default",
        "support",
        spec=shadow,
        strategy=strategy_from_dict({"kind": "shadow", "mirror": 100}),
    )
    answers = [await env.ask(f"u{i}") for i in range(5)]
    await env.releases.drain()
    assert answers == ["v1"] * 5  # users only ever get stable's answers
    assert env.charged == []  # the candidate's charge tool was never executed
    events = [
        e for e in await env.releases.store.events("default", "support") if e.event == "shadow"
    ]
    assert len(events) == 5
    for event in events:
        assert event.detail["answer"] == "v1"
        assert event.detail["shadow_answer"] == "use-tool shadow after skipped in shadow"
        assert event.detail["same"] is False


async def test_one_rollout_per_agent_at_a_time(env: Env) -> None:
    await env.releases.create(
        "default", "support", spec=replace(STABLE, instructions="v2"), strategy=CANARY
    )
    with pytest.raises(Conflict):
        await env.releases.create(
            "default", "support", spec=replace(STABLE, instructions="v3"), strategy=CANARY
        )
    await env.releases.command("default", "support", Command.ABORT)
    again = await env.releases.create(
        "default", "support", spec=replace(STABLE, instructions="v3"), strategy=CANARY
    )
    assert again.state.phase is Phase.PROGRESSING


async def test_feedback_counts_for_the_version_that_answered(env: Env) -> None:
    session = await env.agents.create_session("support")
    run = await env.agents.submit(session.id, user())
    await env.agents.finished(run.id)
    made = await env.releases.feedback("default", run.id, score=-1, comment="meh")
    assert made.version == STABLE.version
    counts = await env.releases.store.feedback_counts("default", "support", STABLE.version, since=0)
    assert counts == (0, 1)
