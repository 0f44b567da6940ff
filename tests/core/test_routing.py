"""Tables for the pure routing decisions: ranking, circuit breaker, backoff, what to do after
a failure, configuration checks."""

from __future__ import annotations

import doctest
from collections import Counter

import pytest

import wayport.core.routing as routing
from wayport.core.errors import (
    BackendError,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    CircuitOpen,
    ConfigError,
    ContextWindowExceeded,
    InvalidRequest,
    UpstreamRateLimited,
)
from wayport.core.routing import (
    CLOSED,
    Action,
    CircuitPolicy,
    CircuitState,
    CircuitStatus,
    DeploymentView,
    ModelGroup,
    RouterPolicy,
    Strategy,
    WeightedDeployment,
    after_failure,
    backoff_delay,
    circuit_allow,
    circuit_available,
    circuit_failure,
    circuit_release,
    circuit_success,
    context_plan,
    ewma,
    fallback_plan,
    rank,
    validate_groups,
)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(routing)
    assert result.attempted > 0
    assert result.failed == 0


# --------------------------------------------------------------------------- ranking


def V(
    name: str,
    weight: float = 1.0,
    inflight: int = 0,
    latency: float | None = None,
    available: bool = True,
) -> DeploymentView:
    return DeploymentView(
        name=name, weight=weight, inflight=inflight, latency_ewma=latency, available=available
    )


@pytest.mark.parametrize(
    ("views", "strategy", "rand", "expected"),
    [
        ([], Strategy.WEIGHTED, 0.5, []),
        ([V("a")], Strategy.LATENCY, 0.5, ["a"]),
        ([V("a", available=False)], Strategy.WEIGHTED, 0.5, []),
        # weighted: a owns [0, 1), b owns [1, 4) of the total 4
        ([V("a", 1), V("b", 3)], Strategy.WEIGHTED, 0.0, ["a", "b"]),
        ([V("a", 1), V("b", 3)], Strategy.WEIGHTED, 0.24, ["a", "b"]),
        ([V("a", 1), V("b", 3)], Strategy.WEIGHTED, 0.25, ["b", "a"]),
        ([V("a", 1), V("b", 3)], Strategy.WEIGHTED, 0.999999, ["b", "a"]),
        # rescaled remainder picks the second: 0.6*3=1.8 -> b, inside b (1..2) at 0.8 -> c
        ([V("a"), V("b"), V("c")], Strategy.WEIGHTED, 0.6, ["b", "c", "a"]),
        ([V("a"), V("b"), V("c")], Strategy.WEIGHTED, 0.4, ["b", "a", "c"]),
        # zero weight is a last resort; an unavailable one is left out
        ([V("z", 0), V("a", 1)], Strategy.WEIGHTED, 0.0, ["a", "z"]),
        ([V("a", 5, available=False), V("b", 1)], Strategy.WEIGHTED, 0.1, ["b"]),
        ([V("z", 0), V("y", 0)], Strategy.WEIGHTED, 0.7, ["z", "y"]),
        # least in flight, weight breaks ties, then config order
        ([V("a", inflight=3), V("b", inflight=1)], Strategy.LEAST_INFLIGHT, 0.0, ["b", "a"]),
        (
            [V("a", 1, 2), V("b", 2, 2), V("c", 1, 0)],
            Strategy.LEAST_INFLIGHT,
            0.0,
            ["c", "b", "a"],
        ),
        ([V("a", 1, 1), V("b", 1, 1)], Strategy.LEAST_INFLIGHT, 0.9, ["a", "b"]),
        (
            [V("a", inflight=0, available=False), V("b", inflight=9)],
            Strategy.LEAST_INFLIGHT,
            0.0,
            ["b"],
        ),
        # latency: unmeasured first (heavier first), then lowest EWMA
        ([V("a", latency=0.2), V("b", latency=0.1)], Strategy.LATENCY, 0.0, ["b", "a"]),
        ([V("a", latency=0.1), V("b"), V("c", 2)], Strategy.LATENCY, 0.0, ["c", "b", "a"]),
        ([V("a", 1, latency=0.1), V("b", 2, latency=0.1)], Strategy.LATENCY, 0.0, ["b", "a"]),
        (
            [V("a", latency=0.1, available=False), V("b", latency=9)],
            Strategy.LATENCY,
            0.0,
            ["b"],
        ),
    ],
)
def test_rank(
    views: list[DeploymentView], strategy: Strategy, rand: float, expected: list[str]
) -> None:
    assert rank(views, strategy, rand) == expected


def test_weighted_rank_follows_weights() -> None:
    views = [V("a", 1), V("b", 2), V("c", 7)]
    firsts = Counter(rank(views, Strategy.WEIGHTED, i / 1000)[0] for i in range(1000))
    assert firsts == {"a": 100, "b": 200, "c": 700}
    # Every rank is a permutation of the available deployments.
    assert all(sorted(rank(views, Strategy.WEIGHTED, i / 97)) == ["a", "b", "c"] for i in range(97))


@pytest.mark.parametrize(
    ("previous", "sample", "alpha", "expected"),
    [(None, 2.0, 0.3, 2.0), (1.0, 2.0, 0.5, 1.5), (1.0, 3.0, 1.0, 3.0), (4.0, 0.0, 0.25, 3.0)],
)
def test_ewma(previous: float | None, sample: float, alpha: float, expected: float) -> None:
    assert ewma(previous, sample, alpha) == pytest.approx(expected)


# --------------------------------------------------------------------------- circuit breaker

P = CircuitPolicy(failure_threshold=3, cooldown=30.0, half_open_probes=2)
OPEN_AT_100 = CircuitState(status=CircuitStatus.OPEN, failures=3, opened_at=100.0)
HALF = CircuitStatus.HALF_OPEN


@pytest.mark.parametrize(
    ("state", "now", "allowed", "after"),
    [
        (CLOSED, 0.0, True, CLOSED),
        (CircuitState(failures=2), 0.0, True, CircuitState(failures=2)),
        (OPEN_AT_100, 100.0, False, OPEN_AT_100),
        (OPEN_AT_100, 129.9, False, OPEN_AT_100),
        (OPEN_AT_100, 130.0, True, CircuitState(status=HALF, opened_at=100.0, probes=1)),
        (CircuitState(status=HALF, probes=1), 0.0, True, CircuitState(status=HALF, probes=2)),
        (CircuitState(status=HALF, probes=2), 0.0, False, CircuitState(status=HALF, probes=2)),
    ],
)
def test_circuit_allow(state: CircuitState, now: float, allowed: bool, after: CircuitState) -> None:
    assert circuit_allow(state, P, now) == (allowed, after)
    assert circuit_available(state, P, now) is allowed


@pytest.mark.parametrize(
    ("state", "now", "after"),
    [
        (CLOSED, 5.0, CircuitState(failures=1)),
        (CircuitState(failures=1), 5.0, CircuitState(failures=2)),
        (
            CircuitState(failures=2),
            5.0,
            CircuitState(status=CircuitStatus.OPEN, failures=3, opened_at=5.0),
        ),
        # a failed probe re-opens and restarts the cooldown
        (
            CircuitState(status=HALF, opened_at=1.0, probes=1),
            50.0,
            CircuitState(status=CircuitStatus.OPEN, opened_at=50.0),
        ),
        # a late failure while open does not extend the cooldown
        (OPEN_AT_100, 120.0, OPEN_AT_100),
    ],
)
def test_circuit_failure(state: CircuitState, now: float, after: CircuitState) -> None:
    assert circuit_failure(state, P, now) == after


@pytest.mark.parametrize(
    ("state", "after"),
    [
        (CLOSED, CLOSED),
        (CircuitState(failures=2), CLOSED),
        (CircuitState(status=HALF, opened_at=1.0, probes=2), CLOSED),
        (OPEN_AT_100, OPEN_AT_100),  # late success of a request admitted before opening
    ],
)
def test_circuit_success(state: CircuitState, after: CircuitState) -> None:
    assert circuit_success(state, P) == after


@pytest.mark.parametrize(
    ("state", "after"),
    [
        (CircuitState(status=HALF, probes=2), CircuitState(status=HALF, probes=1)),
        (CircuitState(status=HALF, probes=0), CircuitState(status=HALF, probes=0)),
        (CircuitState(failures=1), CircuitState(failures=1)),
        (OPEN_AT_100, OPEN_AT_100),
    ],
)
def test_circuit_release(state: CircuitState, after: CircuitState) -> None:
    assert circuit_release(state) == after


def test_circuit_lifecycle() -> None:
    p = CircuitPolicy(failure_threshold=2, cooldown=10.0, half_open_probes=1)
    s = circuit_failure(CLOSED, p, now=0.0)
    s = circuit_success(s, p)  # a success in between resets the count
    s = circuit_failure(s, p, now=1.0)
    assert s.status is CircuitStatus.CLOSED
    s = circuit_failure(s, p, now=2.0)
    assert s.status is CircuitStatus.OPEN
    assert circuit_allow(s, p, now=11.9) == (False, s)
    ok, s = circuit_allow(s, p, now=12.0)
    assert ok and s.status is HALF
    assert circuit_allow(s, p, now=12.0)[0] is False  # one probe at a time
    s = circuit_failure(s, p, now=13.0)
    assert (s.status, s.opened_at) == (CircuitStatus.OPEN, 13.0)
    assert circuit_allow(s, p, now=22.9)[0] is False
    ok, s = circuit_allow(s, p, now=23.0)
    assert ok
    assert circuit_success(s, p) == CLOSED


# --------------------------------------------------------------------------- backoff

BP = RouterPolicy(backoff_base=0.5, backoff_max=4.0)


@pytest.mark.parametrize(
    ("attempt", "jitter", "retry_after", "expected"),
    [
        (0, 0.0, None, 0.25),  # equal jitter: [ceiling / 2, ceiling)
        (0, 0.5, None, 0.375),
        (0, 1.0, None, 0.5),
        (1, 0.0, None, 0.5),
        (2, 0.0, None, 1.0),
        (3, 1.0, None, 4.0),
        (4, 0.0, None, 2.0),  # capped: ceiling stays at backoff_max
        (10_000, 1.0, None, 4.0),  # no overflow
        (0, 0.0, 3.0, 3.0),  # Retry-After is a floor
        (0, 0.0, 60.0, 60.0),  # even above backoff_max
        (3, 1.0, 1.0, 4.0),  # a short Retry-After does not shorten the backoff
        (-1, 0.0, None, 0.25),
        (0, 2.0, None, 0.5),  # jitter is clamped into [0, 1]
    ],
)
def test_backoff_delay(
    attempt: int, jitter: float, retry_after: float | None, expected: float
) -> None:
    assert backoff_delay(attempt, BP, jitter, retry_after) == pytest.approx(expected)


# --------------------------------------------------------------------------- after a failure

R, F, C, X, T = Action.RETRY, Action.FALLBACK, Action.CONTEXT_FALLBACK, Action.RAISE, Action.TIMEOUT
CWE = ContextWindowExceeded("too long")
E503 = BackendUnavailable("down")


@pytest.mark.parametrize(
    ("error", "attempts", "time_left", "wait", "can_retry", "fb", "cwfb", "action"),
    [
        (E503, 1, 10.0, 1.0, True, False, False, R),
        (E503, 2, 10.0, 1.0, True, False, False, R),
        (E503, 3, 10.0, 1.0, True, True, False, F),  # max_retries=2 spent -> fallback
        (E503, 3, 10.0, 1.0, True, False, False, X),  # ... or give up with the error
        (BackendTimeout("t"), 1, 10.0, 0.1, True, False, False, R),
        (UpstreamRateLimited("429"), 1, 10.0, 0.1, True, False, False, R),
        (BackendError("502"), 1, 10.0, 0.1, True, False, False, R),
        (CircuitOpen("open"), 0, 10.0, 0.1, False, True, False, F),  # nothing to retry on
        (CircuitOpen("open"), 0, 10.0, 0.1, False, False, False, X),
        # the wait would reach the deadline: no sleeping, move on or give up
        (E503, 1, 5.0, 5.0, True, True, False, F),
        (E503, 1, 5.0, 30.0, True, False, False, X),
        (E503, 1, 5.0, 4.99, True, False, False, R),
        # the deadline has passed
        (E503, 1, 0.0, 0.1, True, True, False, T),
        (E503, 1, -1.0, 0.1, True, False, False, T),
        # not retriable: raised at once
        (BackendRejected("400"), 1, 10.0, 0.0, True, True, True, X),
        (InvalidRequest("bad"), 1, 10.0, 0.0, True, True, False, X),
        (ValueError("bug"), 1, 10.0, 0.0, True, True, False, X),
        # prompt too long: context-window fallbacks, never plain fallbacks or retries
        (CWE, 1, 10.0, 0.0, True, True, True, C),
        (CWE, 1, 10.0, 0.0, True, True, False, X),
        (CWE, 1, 0.0, 0.0, True, False, True, T),
        (CWE, 1, 0.0, 0.0, True, False, False, X),
    ],
)
def test_after_failure(
    error: BaseException,
    attempts: int,
    time_left: float,
    wait: float,
    can_retry: bool,
    fb: bool,
    cwfb: bool,
    action: Action,
) -> None:
    decision = after_failure(
        error,
        attempts=attempts,
        max_retries=2,
        time_left=time_left,
        wait=wait,
        can_retry=can_retry,
        has_fallback=fb,
        has_context_fallback=cwfb,
    )
    assert decision.action is action
    assert decision.delay == (wait if action is R else 0.0)


def test_after_failure_with_no_retries_allowed() -> None:
    d = after_failure(E503, attempts=1, max_retries=0, time_left=10.0, wait=0.1)
    assert d.action is Action.RAISE


# --------------------------------------------------------------------------- configuration


def G(
    name: str, *deps: str, fallbacks: tuple[str, ...] = (), cw: tuple[str, ...] = ()
) -> ModelGroup:
    return ModelGroup(
        name=name,
        deployments=tuple(WeightedDeployment(name=d) for d in deps),
        fallbacks=fallbacks,
        context_window_fallbacks=cw,
    )


@pytest.mark.parametrize(
    ("groups", "policy", "message"),
    [
        ([G("a", "x"), G("a", "y")], RouterPolicy(), "'a' is defined twice"),
        ([G("a")], RouterPolicy(), "'a' has no deployments"),
        ([G("a", "nope")], RouterPolicy(), "deployment 'nope', which has no backend"),
        (
            [ModelGroup(name="a", deployments=(WeightedDeployment(name="x", weight=-1),))],
            RouterPolicy(),
            "weights are finite and >= 0",
        ),
        (
            [
                ModelGroup(
                    name="a", deployments=(WeightedDeployment(name="x", weight=float("nan")),)
                )
            ],
            RouterPolicy(),
            "weights are finite",
        ),
        ([G("a", "x", fallbacks=("b",))], RouterPolicy(), "'b' in fallbacks"),
        ([G("a", "x", cw=("b",))], RouterPolicy(), "'b' in context_window_fallbacks"),
        ([G("a", "x", fallbacks=("a",))], RouterPolicy(), "cycle between model groups: a -> a"),
        (
            [G("a", "x", fallbacks=("b",)), G("b", "x", cw=("c",)), G("c", "y", fallbacks=("b",))],
            RouterPolicy(),
            "b -> c -> b",
        ),
        ([G("a", "x")], RouterPolicy(max_retries=-1), "max_retries"),
        ([G("a", "x")], RouterPolicy(timeout=0), "timeout"),
        ([G("a", "x")], RouterPolicy(latency_alpha=0), "latency_alpha"),
        ([G("a", "x")], RouterPolicy(circuit=CircuitPolicy(failure_threshold=0)), "threshold"),
        ([G("a", "x")], RouterPolicy(circuit=CircuitPolicy(half_open_probes=0)), "probes"),
    ],
)
def test_validate_groups_rejects(
    groups: list[ModelGroup], policy: RouterPolicy, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as info:
        validate_groups(groups, {"x", "y"}, policy)
    assert info.value.code == "invalid_config"


def test_validate_groups_accepts_a_dag() -> None:
    groups = [
        G("a", "x", fallbacks=("b", "c"), cw=("big",)),
        G("b", "x", fallbacks=("c",)),
        G("c", "y"),
        G("big", "y", fallbacks=("c",)),
    ]
    by_name = validate_groups(groups, {"x", "y"}, RouterPolicy())
    assert list(by_name) == ["a", "b", "c", "big"]
    assert fallback_plan(by_name, "a") == ("a", "b", "c")
    assert fallback_plan(by_name, "c") == ("c",)
    assert context_plan(by_name, "a") == ("big", "c")
    assert context_plan(by_name, "b") == ()
