"""Routing decisions: which deployment to try next, how long to back off, whether a
deployment's circuit lets a request through, what to do after a failed attempt. Pure
functions over data; the async router in ``wayport.models.router`` applies them.

    >>> views = [DeploymentView(name="a", inflight=3), DeploymentView(name="b", inflight=1)]
    >>> rank(views, Strategy.LEAST_INFLIGHT, rand=0.5)
    ['b', 'a']
    >>> policy = RouterPolicy(backoff_base=0.1, backoff_max=5.0)
    >>> backoff_delay(2, policy, jitter=0.0, retry_after=None)  # equal jitter: half to all
    0.2
    >>> backoff_delay(0, policy, jitter=0.0, retry_after=3.0)  # never sooner than Retry-After
    3.0
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from wayport.core.errors import ConfigError, ContextWindowExceeded, WayportError


class Strategy(StrEnum):
    WEIGHTED = "weighted"  #: weighted random over healthy deployments
    LEAST_INFLIGHT = "least_inflight"  #: fewest requests in flight, weight breaks ties
    LATENCY = "latency"  #: lowest smoothed latency (EWMA), unmeasured deployments first


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightedDeployment:
    name: str
    weight: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelGroup:
    """A public model name served by one or more deployments."""

    name: str
    deployments: tuple[WeightedDeployment, ...]
    fallbacks: tuple[str, ...] = ()  #: groups tried in order when this one fails
    context_window_fallbacks: tuple[str, ...] = ()  #: groups tried when the prompt is too long


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitPolicy:
    failure_threshold: int = 5  #: consecutive failures that open the circuit
    cooldown: float = 30.0  #: seconds open before half-open probes are let through
    half_open_probes: int = 1  #: concurrent probes allowed while half-open


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterPolicy:
    strategy: Strategy = Strategy.WEIGHTED
    max_retries: int = 2  #: further attempts after the first, across deployments of a group
    backoff_base: float = 0.1  #: seconds; attempt n waits about base * 2**n, jittered
    backoff_max: float = 5.0
    timeout: float = 600.0  #: overall deadline for one request, retries and fallbacks included
    circuit: CircuitPolicy = field(default_factory=CircuitPolicy)
    latency_alpha: float = 0.3  #: weight of the newest sample in the latency EWMA


# --------------------------------------------------------------------------- ranking


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentView:
    """What ranking needs to know about one deployment at one moment."""

    name: str
    weight: float = 1.0
    inflight: int = 0
    latency_ewma: float | None = None  #: seconds; ``None`` until the first success
    available: bool = True  #: False while its circuit refuses requests


def rank(candidates: Sequence[DeploymentView], strategy: Strategy, rand: float) -> list[str]:
    """The order in which to try a group's deployments.

    Unavailable deployments (circuit open) are *left out*: trying them would only fail fast,
    and the router raises ``CircuitOpen`` when nothing is left. ``rand`` in [0, 1) drives the
    weighted strategy and is ignored by the others, which break ties by weight, then by
    configuration order.

    >>> v = [DeploymentView(name="a", weight=1), DeploymentView(name="b", weight=3)]
    >>> rank(v, Strategy.WEIGHTED, rand=0.1), rank(v, Strategy.WEIGHTED, rand=0.9)
    (['a', 'b'], ['b', 'a'])
    """
    pool = [c for c in candidates if c.available]
    if len(pool) <= 1:
        return [c.name for c in pool]
    if strategy is Strategy.WEIGHTED:
        return _weighted_order(pool, rand)
    if strategy is Strategy.LEAST_INFLIGHT:
        pool.sort(key=lambda c: (c.inflight, -c.weight))
    else:
        # Unmeasured deployments go first so every deployment gets a latency sample.
        pool.sort(
            key=lambda c: (
                c.latency_ewma is not None,
                c.latency_ewma if c.latency_ewma is not None else 0.0,
                -c.weight,
            )
        )
    return [c.name for c in pool]


_BELOW_ONE = math.nextafter(1.0, 0.0)


def _weighted_order(pool: list[DeploymentView], rand: float) -> list[str]:
    # Weighted sampling without replacement from a single uniform number: once ``u`` has
    # fallen into a deployment's slice of the cumulative weight, its position inside that
    # slice is again uniform on [0, 1), so it is rescaled and reused for the next pick. Float
    # precision limits this to a few dozen deployments, far more than a group ever has.
    order: list[str] = []
    u = min(max(rand, 0.0), _BELOW_ONE)
    while pool:
        total = sum(max(c.weight, 0.0) for c in pool)
        if total <= 0.0:
            order.extend(c.name for c in pool)  # zero weights: last resort, config order
            break
        target = u * total
        acc = 0.0
        chosen = -1
        for i, c in enumerate(pool):
            w = max(c.weight, 0.0)
            if w <= 0.0:
                continue
            chosen = i
            if target < acc + w:
                break
            acc += w
        weight = max(pool[chosen].weight, 0.0)
        u = min(max((target - acc) / weight, 0.0), _BELOW_ONE)
        order.append(pool.pop(chosen).name)
    return order


def ewma(previous: float | None, sample: float, alpha: float) -> float:
    """Exponentially weighted moving average; the first sample is taken as is.

    >>> ewma(None, 2.0, 0.5), ewma(2.0, 4.0, 0.5)
    (2.0, 3.0)
    """
    if previous is None:
        return sample
    return previous + alpha * (sample - previous)


# --------------------------------------------------------------------------- circuit breaker


class CircuitStatus(StrEnum):
    CLOSED = "closed"  #: requests flow; consecutive failures are counted
    OPEN = "open"  #: requests are refused until the cooldown has passed
    HALF_OPEN = "half_open"  #: a few probes test whether the deployment recovered


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitState:
    status: CircuitStatus = CircuitStatus.CLOSED
    failures: int = 0  #: consecutive failures while closed
    opened_at: float = 0.0  #: when the circuit last opened (clock seconds)
    probes: int = 0  #: probes in flight while half-open


CLOSED = CircuitState()


def circuit_available(state: CircuitState, policy: CircuitPolicy, now: float) -> bool:
    """Whether ``circuit_allow`` would let a request through now (without taking a slot)."""
    if state.status is CircuitStatus.CLOSED:
        return True
    if state.status is CircuitStatus.OPEN:
        return now - state.opened_at >= policy.cooldown
    return state.probes < policy.half_open_probes


def circuit_allow(
    state: CircuitState, policy: CircuitPolicy, now: float
) -> tuple[bool, CircuitState]:
    """Admit a request or refuse it. An open circuit turns half-open once ``cooldown`` has
    passed; a half-open circuit counts the probe it admits until ``circuit_success``,
    ``circuit_failure`` or ``circuit_release`` reports how it ended.

    >>> p = CircuitPolicy(failure_threshold=1, cooldown=10.0)
    >>> opened = circuit_failure(CLOSED, p, now=100.0)
    >>> circuit_allow(opened, p, now=105.0)[0], circuit_allow(opened, p, now=110.0)[1].status
    (False, <CircuitStatus.HALF_OPEN: 'half_open'>)
    """
    status = state.status
    if status is CircuitStatus.CLOSED:
        return True, state
    if status is CircuitStatus.OPEN:
        if now - state.opened_at < policy.cooldown:
            return False, state
        return True, replace(state, status=CircuitStatus.HALF_OPEN, failures=0, probes=1)
    if state.probes < policy.half_open_probes:
        return True, replace(state, probes=state.probes + 1)
    return False, state


def circuit_success(state: CircuitState, policy: CircuitPolicy) -> CircuitState:
    """A request succeeded: a probe closes the circuit; a closed one forgets its failures.
    A late success from a request admitted before the circuit opened changes nothing."""
    if state.status is CircuitStatus.OPEN:
        return state
    if state.status is CircuitStatus.HALF_OPEN or state.failures:
        return CLOSED
    return state


def circuit_failure(state: CircuitState, policy: CircuitPolicy, now: float) -> CircuitState:
    """A request failed in a way that blames the deployment. The ``failure_threshold``-th
    consecutive failure opens the circuit; a failed probe re-opens it and restarts the
    cooldown. A late failure while open does not extend the cooldown."""
    if state.status is CircuitStatus.OPEN:
        return state
    if state.status is CircuitStatus.HALF_OPEN:
        return CircuitState(status=CircuitStatus.OPEN, opened_at=now)
    failures = state.failures + 1
    if failures >= policy.failure_threshold:
        return CircuitState(status=CircuitStatus.OPEN, failures=failures, opened_at=now)
    return CircuitState(failures=failures)


def circuit_release(state: CircuitState) -> CircuitState:
    """A request ended without telling anything about the deployment (cancelled): give its
    probe slot back if it held one."""
    if state.status is CircuitStatus.HALF_OPEN and state.probes > 0:
        return replace(state, probes=state.probes - 1)
    return state


# --------------------------------------------------------------------------- backoff


def backoff_delay(
    attempt: int, policy: RouterPolicy, jitter: float, retry_after: float | None
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    *Equal jitter*: the exponential ceiling ``min(backoff_max, backoff_base * 2**attempt)`` is
    halved and the other half is spread by ``jitter`` in [0, 1), so waits stay close to the
    nominal curve while clients that failed together do not retry together. A ``Retry-After``
    from the upstream is a floor: the result is never below it, even above ``backoff_max``.
    """
    ceiling = min(policy.backoff_max, policy.backoff_base * 2.0 ** min(max(attempt, 0), 64))
    delay = ceiling * (0.5 + 0.5 * min(max(jitter, 0.0), 1.0))
    if retry_after is not None and retry_after > delay:
        return retry_after
    return delay


# --------------------------------------------------------------------------- after a failure


class Action(StrEnum):
    RETRY = "retry"  #: same group, next ranked deployment, after ``Decision.delay``
    FALLBACK = "fallback"  #: next group of the fallback plan, at once
    CONTEXT_FALLBACK = "context_fallback"  #: the failed group's context-window fallbacks
    RAISE = "raise"  #: give up with the error that ended the last attempt
    TIMEOUT = "timeout"  #: give up: the overall deadline has passed


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    action: Action
    delay: float = 0.0  #: seconds to wait first (``RETRY`` only)


_FALLBACK = Decision(action=Action.FALLBACK)
_CONTEXT_FALLBACK = Decision(action=Action.CONTEXT_FALLBACK)
_RAISE = Decision(action=Action.RAISE)
_TIMEOUT = Decision(action=Action.TIMEOUT)


def after_failure(
    error: BaseException,
    *,
    attempts: int,
    max_retries: int,
    time_left: float,
    wait: float,
    can_retry: bool = True,
    has_fallback: bool = False,
    has_context_fallback: bool = False,
) -> Decision:
    """What to do once an attempt failed with ``error``.

    ``attempts`` counts the attempts made in the current group (the failed one included);
    ``wait`` is the backoff the retry would need (``backoff_delay``); ``can_retry`` is False
    when no deployment of the group would admit another request. A retry whose wait would
    reach the deadline is not slept: the plan moves on to fallbacks, or gives up with the
    error itself (which keeps its ``Retry-After`` for the client).

    >>> from wayport.core.errors import BackendUnavailable
    >>> after_failure(BackendUnavailable("503"), attempts=1, max_retries=2, time_left=9, wait=1)
    Decision(action=<Action.RETRY: 'retry'>, delay=1)
    """
    if isinstance(error, ContextWindowExceeded):
        if not has_context_fallback:
            return _RAISE
        return _CONTEXT_FALLBACK if time_left > 0.0 else _TIMEOUT
    if not isinstance(error, WayportError) or not error.retriable:
        return _RAISE
    if time_left <= 0.0:
        return _TIMEOUT
    if can_retry and attempts <= max_retries and wait < time_left:
        return Decision(action=Action.RETRY, delay=wait)
    return _FALLBACK if has_fallback else _RAISE


# --------------------------------------------------------------------------- configuration


def validate_groups(
    groups: Iterable[ModelGroup], deployments: Collection[str], policy: RouterPolicy
) -> dict[str, ModelGroup]:
    """Check a router configuration and index its groups by name; raise ``ConfigError``
    naming the first problem found (unknown deployment or group, fallback cycle …)."""
    by_name: dict[str, ModelGroup] = {}
    for group in groups:
        if group.name in by_name:
            raise ConfigError(f"model group {group.name!r} is defined twice")
        if not group.deployments:
            raise ConfigError(f"model group {group.name!r} has no deployments")
        for dep in group.deployments:
            if dep.name not in deployments:
                raise ConfigError(
                    f"model group {group.name!r} names deployment {dep.name!r}, "
                    f"which has no backend"
                )
            if not dep.weight >= 0.0 or math.isinf(dep.weight):
                raise ConfigError(
                    f"deployment {dep.name!r} of model group {group.name!r} has weight "
                    f"{dep.weight!r}; weights are finite and >= 0"
                )
        by_name[group.name] = group
    for group in by_name.values():
        for kind, targets in (
            ("fallbacks", group.fallbacks),
            ("context_window_fallbacks", group.context_window_fallbacks),
        ):
            for target in targets:
                if target not in by_name:
                    raise ConfigError(
                        f"model group {group.name!r} lists {target!r} in {kind}, "
                        f"but no model group has that name"
                    )
    _check_acyclic(by_name)
    _check_policy(policy)
    return by_name


def _check_acyclic(by_name: Mapping[str, ModelGroup]) -> None:
    # Both kinds of fallback edges together must form a DAG: that bounds every request's plan.
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = " -> ".join([*path[path.index(name) :], name])
            raise ConfigError(f"fallback cycle between model groups: {cycle}")
        if name in done:
            return
        group = by_name[name]
        path.append(name)
        for target in (*group.fallbacks, *group.context_window_fallbacks):
            visit(target, path)
        path.pop()
        done.add(name)

    for name in by_name:
        visit(name, [])


def _check_policy(policy: RouterPolicy) -> None:
    problems = [
        (policy.max_retries < 0, "max_retries must be >= 0"),
        (not policy.timeout > 0.0, "timeout must be > 0"),
        (policy.backoff_base < 0.0 or policy.backoff_max < 0.0, "backoff must be >= 0"),
        (not 0.0 < policy.latency_alpha <= 1.0, "latency_alpha must be in (0, 1]"),
        (policy.circuit.failure_threshold < 1, "circuit.failure_threshold must be >= 1"),
        (policy.circuit.half_open_probes < 1, "circuit.half_open_probes must be >= 1"),
        (policy.circuit.cooldown < 0.0, "circuit.cooldown must be >= 0"),
    ]
    for bad, message in problems:
        if bad:
            raise ConfigError(f"router policy: {message}")


def fallback_plan(by_name: Mapping[str, ModelGroup], name: str) -> tuple[str, ...]:
    """The groups a request for ``name`` tries, in order: the group itself, then each of its
    ``fallbacks`` followed by that group's own fallbacks (depth first), each group once.

    >>> g = {n: ModelGroup(name=n, deployments=(), fallbacks=f) for n, f in
    ...      [("a", ("b", "c")), ("b", ("c", "d")), ("c", ()), ("d", ())]}
    >>> fallback_plan(g, "a")
    ('a', 'b', 'c', 'd')
    """
    plan: list[str] = []

    def visit(group: str) -> None:
        if group in plan:
            return
        plan.append(group)
        for target in by_name[group].fallbacks:
            visit(target)

    visit(name)
    return tuple(plan)


def context_plan(by_name: Mapping[str, ModelGroup], name: str) -> tuple[str, ...]:
    """Where a request goes when group ``name`` finds the prompt too long: the fallback plans
    of its ``context_window_fallbacks``, concatenated, each group once."""
    plan: list[str] = []
    for target in by_name[name].context_window_fallbacks:
        plan.extend(g for g in fallback_plan(by_name, target) if g not in plan)
    return tuple(plan)


# --------------------------------------------------------------------------- reporting


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentStatus:
    """One deployment as the router sees it, for ``/readyz``, metrics and the CLI."""

    name: str
    ready: bool
    circuit: CircuitStatus
    consecutive_failures: int
    inflight: int
    latency_ewma: float | None  #: seconds; time to first chunk for streams
