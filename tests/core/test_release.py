"""The rollout controller as tables: strategy + state + observation -> next state + actions."""

from __future__ import annotations

from dataclasses import replace

import pytest

from wayport.core.release import (
    Analysis,
    AnalysisStep,
    Command,
    Condition,
    EvalStep,
    Kind,
    Notify,
    Observed,
    Pause,
    Phase,
    Promote,
    ResetWindow,
    Rollback,
    RolloutState,
    SetTraffic,
    SetWeight,
    Signals,
    Strategy,
    Verdict,
    assign,
    bucket,
    compare,
    decide,
    evaluate,
    start,
)

HEALTHY = Signals(requests=100, errors=1, p95_latency_ms=800.0)
BROKEN = Signals(requests=100, errors=30, p95_latency_ms=800.0)
QUIET = Signals(requests=3)

ERRORS_BELOW_5 = Analysis(
    conditions=(Condition(metric="error_rate", op="<", threshold=0.05),),
    min_requests=20,
    interval=60.0,
    max_inconclusive=3,
)
CANARY = Strategy(
    kind=Kind.CANARY,
    steps=(
        SetWeight(weight=10),
        AnalysisStep(analysis=ERRORS_BELOW_5),
        SetWeight(weight=50),
        Pause(seconds=120.0),
        Pause(),
    ),
)


def begin(strategy: Strategy = CANARY, now: float = 0.0) -> RolloutState:
    return start(strategy, agent="support", stable="v1", candidate="v2", now=now).state


def kinds(actions: tuple[object, ...]) -> list[str]:
    return [type(a).__name__ for a in actions]


# --- evaluate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "stable", "verdict"),
    [
        (HEALTHY, HEALTHY, Verdict.PASS),
        (BROKEN, HEALTHY, Verdict.FAIL),
        (QUIET, HEALTHY, Verdict.INCONCLUSIVE),
        (Signals(requests=20, errors=0), Signals(), Verdict.PASS),  # exactly min_requests
        (Signals(requests=19, errors=0), Signals(), Verdict.INCONCLUSIVE),
    ],
)
def test_evaluate(candidate: Signals, stable: Signals, verdict: Verdict) -> None:
    assert evaluate(ERRORS_BELOW_5, candidate, stable)[0] is verdict


def test_relative_conditions_compare_with_stable() -> None:
    slower = Analysis(
        conditions=(Condition(metric="p95_latency_ms", op="<=", threshold=1.2, relative=True),),
        min_requests=1,
    )
    fast = Signals(requests=5, p95_latency_ms=1000.0)
    assert evaluate(slower, replace(fast, p95_latency_ms=1100.0), fast)[0] is Verdict.PASS
    assert evaluate(slower, replace(fast, p95_latency_ms=1300.0), fast)[0] is Verdict.FAIL
    assert evaluate(slower, fast, Signals())[0] is Verdict.INCONCLUSIVE  # stable has no data


@pytest.mark.parametrize(
    ("metric", "signals", "value"),
    [
        ("error_rate", Signals(requests=4, errors=1), 0.25),
        ("cost_per_run", Signals(requests=4, cost=2.0), 0.5),
        ("tool_failure_rate", Signals(tool_calls=10, tool_failures=1), 0.1),
        ("feedback_score", Signals(feedback_up=3, feedback_down=1), 0.75),
        ("eval_score", Signals(eval_score=0.9), 0.9),
        ("error_rate", Signals(), None),
        ("feedback_score", Signals(), None),
    ],
)
def test_metric_values(metric: str, signals: Signals, value: float | None) -> None:
    assert signals.value(metric) == value


def test_unknown_metrics_and_operators_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        Condition(metric="vibes", op="<", threshold=1)
    with pytest.raises(ValueError, match="unknown operator"):
        Condition(metric="error_rate", op="=~", threshold=1)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        Strategy(steps=(SetWeight(weight=120),))


# --- canary ---------------------------------------------------------------------------------


def test_start_sends_no_traffic_until_the_first_step() -> None:
    decision = start(CANARY, agent="support", stable="v1", candidate="v2", now=0.0)
    assert decision.state.phase is Phase.PROGRESSING
    assert decision.actions[0] == SetTraffic(weight=0, mirror=0)
    assert isinstance(decision.actions[-1], ResetWindow)


def test_a_healthy_canary_walks_every_step_to_promotion() -> None:
    state = begin()
    # t=0: set weight 10, then the analysis step waits one interval
    d = decide(CANARY, state, Observed(now=0.0, candidate=QUIET))
    assert d.state.weight == 10 and d.state.step == 1
    assert SetTraffic(weight=10, mirror=0) in d.actions
    # before the interval: nothing
    same = decide(CANARY, d.state, Observed(now=30.0, candidate=HEALTHY))
    assert same.state == d.state and not same.actions
    # interval passed and healthy: on to weight 50 and the timed pause
    d = decide(CANARY, d.state, Observed(now=60.0, candidate=HEALTHY))
    assert d.state.weight == 50 and d.state.step == 3
    # the timed pause holds until 120 s have passed, then the open pause waits for a human
    assert not decide(CANARY, d.state, Observed(now=179.0)).actions
    d = decide(CANARY, d.state, Observed(now=180.0))
    assert d.state.phase is Phase.PAUSED and d.state.step == 4
    assert decide(CANARY, d.state, Observed(now=10_000.0)).state == d.state
    # promote resumes; no steps left: promoted
    d = decide(CANARY, d.state, Observed(now=200.0, command=Command.PROMOTE))
    assert d.state.phase is Phase.PROMOTED
    assert d.state.stable == "v2" and d.state.previous == "v1" and d.state.weight == 100
    assert Promote(version="v2") in d.actions
    assert Notify(event="promoted", detail="all steps passed") in d.actions


def test_a_failing_canary_rolls_back_by_itself() -> None:
    d = decide(CANARY, begin(), Observed(now=0.0))
    d = decide(CANARY, d.state, Observed(now=60.0, candidate=BROKEN, stable=HEALTHY))
    assert d.state.phase is Phase.ROLLED_BACK
    assert d.state.weight == 0 and d.state.stable == "v1"
    assert kinds(d.actions) == ["SetTraffic", "Rollback", "Notify"]
    rollback = d.actions[1]
    assert isinstance(rollback, Rollback) and rollback.to == "v1"
    assert "error_rate < 0.05 failed" in rollback.reason
    # terminal states stay put
    assert decide(CANARY, d.state, Observed(now=999.0, candidate=HEALTHY)).actions == ()


def test_the_failure_limit_tolerates_failures_then_rolls_back() -> None:
    lenient = Strategy(
        steps=(
            SetWeight(weight=20),
            AnalysisStep(analysis=replace(ERRORS_BELOW_5, failure_limit=2)),
        )
    )
    state = decide(lenient, begin(lenient), Observed(now=0.0)).state
    for n, t in enumerate((60.0, 120.0), start=1):
        state = decide(lenient, state, Observed(now=t, candidate=BROKEN)).state
        assert state.phase is Phase.PROGRESSING and state.failures == n
    assert decide(lenient, state, Observed(now=180.0, candidate=BROKEN)).state.phase is (
        Phase.ROLLED_BACK
    )


def test_inconclusive_analysis_pauses_for_a_human() -> None:
    state = decide(CANARY, begin(), Observed(now=0.0)).state
    for t in (60.0, 120.0):
        state = decide(CANARY, state, Observed(now=t, candidate=QUIET)).state
        assert state.phase is Phase.PROGRESSING
    d = decide(CANARY, state, Observed(now=180.0, candidate=QUIET))
    assert d.state.phase is Phase.PAUSED and d.state.reason.startswith("inconclusive")
    assert isinstance(d.actions[-1], Notify) and d.actions[-1].event == "paused"


def test_several_successes_can_be_required() -> None:
    strict = Strategy(
        steps=(SetWeight(weight=5), AnalysisStep(analysis=replace(ERRORS_BELOW_5, successes=2)))
    )
    state = decide(strict, begin(strict), Observed(now=0.0)).state
    state = decide(strict, state, Observed(now=60.0, candidate=HEALTHY)).state
    assert state.phase is Phase.PROGRESSING and state.successes == 1
    assert decide(strict, state, Observed(now=120.0, candidate=HEALTHY)).state.phase is (
        Phase.PROMOTED
    )


def test_the_guard_rolls_back_at_any_step() -> None:
    guarded = replace(CANARY, guard=ERRORS_BELOW_5)
    state = decide(guarded, begin(guarded), Observed(now=0.0, candidate=HEALTHY)).state
    d = decide(guarded, state, Observed(now=61.0, candidate=BROKEN))
    assert d.state.phase is Phase.ROLLED_BACK and d.state.reason.startswith("guard:")


def test_an_eval_step_needs_a_passing_score() -> None:
    gated = Strategy(steps=(EvalStep(suite="smoke", min_score=0.8), SetWeight(weight=100)))
    state = begin(gated)
    assert decide(gated, state, Observed(now=1.0)).state == state  # no score yet
    passed = decide(gated, state, Observed(now=2.0, candidate=Signals(eval_score=0.9)))
    assert passed.state.phase is Phase.PROMOTED
    failed = decide(gated, state, Observed(now=2.0, candidate=Signals(eval_score=0.5)))
    assert failed.state.phase is Phase.ROLLED_BACK and "smoke" in failed.state.reason


@pytest.mark.parametrize(
    ("command", "phase"),
    [(Command.ABORT, Phase.ABORTED), (Command.PROMOTE_FULL, Phase.PROMOTED)],
)
def test_human_commands(command: Command, phase: Phase) -> None:
    state = decide(CANARY, begin(), Observed(now=0.0)).state
    d = decide(CANARY, state, Observed(now=5.0, command=command))
    assert d.state.phase is phase


def test_promote_skips_a_running_step() -> None:
    state = decide(CANARY, begin(), Observed(now=0.0)).state  # in the analysis step
    d = decide(CANARY, state, Observed(now=5.0, command=Command.PROMOTE))
    assert d.state.step == 3 and d.state.weight == 50


# --- blue-green, A/B, shadow ----------------------------------------------------------------


def test_blue_green_previews_then_switches_and_switches_back() -> None:
    bg = Strategy(kind=Kind.BLUE_GREEN)
    state = begin(bg)
    assert state.phase is Phase.PAUSED and state.weight == 0
    assert assign(state, current="v1", key="s", preview=True).version == "v2"
    assert assign(state, current="v1", key="s").version == "v1"
    switched = decide(bg, state, Observed(now=10.0, command=Command.PROMOTE)).state
    assert switched.phase is Phase.PROMOTED and switched.stable == "v2"
    back = decide(bg, switched, Observed(now=20.0, command=Command.ROLLBACK))
    assert back.state.stable == "v1" and back.state.phase is Phase.ROLLED_BACK
    assert Rollback(to="v1", reason="rolled back by a human") in back.actions


def test_ab_holds_its_split_until_concluded() -> None:
    ab = Strategy(kind=Kind.AB, split=30)
    state = begin(ab)
    assert state.weight == 30
    assert decide(ab, state, Observed(now=1e6, candidate=BROKEN)).state == state
    report = compare(HEALTHY, BROKEN)
    assert report["error_rate"] == (0.01, 0.3)


def test_shadow_mirrors_and_promotes_or_waits_for_a_human() -> None:
    shadow = Strategy(kind=Kind.SHADOW, mirror=25, steps=(AnalysisStep(analysis=ERRORS_BELOW_5),))
    state = begin(shadow)
    assert state.weight == 0 and state.mirror == 25
    assert decide(shadow, state, Observed(now=60.0, candidate=HEALTHY)).state.phase is (
        Phase.PROMOTED
    )
    careful = replace(shadow, auto_promote=False)
    held = decide(careful, begin(careful), Observed(now=60.0, candidate=HEALTHY)).state
    assert held.phase is Phase.PAUSED and held.candidate == "v2"
    assert decide(shadow, state, Observed(now=60.0, candidate=BROKEN)).state.phase is (
        Phase.ROLLED_BACK
    )


# --- traffic assignment ---------------------------------------------------------------------


def test_assignment_is_sticky_and_follows_the_weight() -> None:
    state = replace(begin(), weight=20)
    keys = [f"session-{i}" for i in range(5000)]
    first = [assign(state, current="v1", key=k).version for k in keys]
    assert first == [assign(state, current="v1", key=k).version for k in keys]  # sticky
    share = first.count("v2") / len(keys)
    assert 0.17 < share < 0.23
    # raising the weight only moves stable sessions onto the candidate, never back
    wider = [assign(replace(state, weight=50), current="v1", key=k).version for k in keys]
    assert all(w == "v2" for f, w in zip(first, wider, strict=True) if f == "v2")


def test_a_session_stays_on_the_version_it_started_on() -> None:
    state = replace(begin(), weight=100)
    assert assign(state, current="v1", key="x", pinned="v1").version == "v1"
    rolled_back = replace(state, phase=Phase.ROLLED_BACK)
    assert assign(rolled_back, current="v1", key="x", pinned="v2").version == "v1"
    assert assign(None, current="v3", key="x", pinned="v1").version == "v1"
    assert assign(None, current="v3", key="x").version == "v3"


def test_shadow_assignment_mirrors_a_share() -> None:
    state = replace(begin(), mirror=30)
    got = [assign(state, current="v1", key=str(i)) for i in range(3000)]
    assert all(a.version == "v1" for a in got)
    assert 0.26 < sum(a.shadow == "v2" for a in got) / len(got) < 0.34


def test_bucket_is_stable_across_processes() -> None:
    assert bucket("abc", "v2") == bucket("abc", "v2")
    assert 0 <= bucket("abc") < 10_000


def test_every_step_reached_is_announced_with_a_fresh_window() -> None:
    d = decide(CANARY, begin(), Observed(now=0.0))
    # the set-weight step itself: new traffic, a new analysis window, and its step event
    assert d.actions[:3] == (
        SetTraffic(weight=10, mirror=0),
        ResetWindow(),
        Notify(event="step", detail="step 1"),
    )
