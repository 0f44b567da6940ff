"""Releases: the rollout controller as a pure function.

A rollout moves traffic for one agent from its ``stable`` version to a ``candidate`` version
following a strategy. The controller never does I/O: the reconciler (``wayport.service``)
collects what it observed, calls ``decide`` and applies the actions it returns::

    state = start(spec, agent="support", stable="a1", candidate="b2", now=0.0)
    decision = decide(spec, state, Observed(now=30.0, candidate=Signals(requests=120)))
    for action in decision.actions: ...          # SetWeight, Promote, Rollback, Notify …
    state = decision.state                        # persisted, so every replica agrees

Strategies:

- ``canary``: steps of ``set_weight``, ``pause`` (timed, or until promoted) and ``analysis``; a
  background ``guard`` analysis may run through every step. Passing the last step promotes.
- ``blue_green``: the candidate takes no traffic but answers a preview header; ``promote``
  switches all traffic at once; the previous stable version stays ready (``previous``) so a
  rollback is one switch back.
- ``ab``: a fixed sticky split; analysis is a comparison report; a human concludes.
- ``shadow``: the candidate gets a mirrored share, never answers users; its analysis decides
  promotion (or pauses for a human).

Analysis: every condition compares one signal of the candidate (or its ratio to stable) with a
threshold. Too few samples is *inconclusive*; a violated condition is a *failure*; more failures
than ``failure_limit`` rolls back; ``max_inconclusive`` inconclusive evaluations in a row pause the
rollout for a human.
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum


class Phase(StrEnum):
    PROGRESSING = "progressing"  #: moving through steps
    PAUSED = "paused"  #: waiting for a human (a pause step without duration, or inconclusive)
    PROMOTED = "promoted"  #: the candidate is stable; the rollout is over
    ROLLED_BACK = "rolled_back"  #: the candidate was withdrawn; stable takes all traffic
    ABORTED = "aborted"  #: a human withdrew the candidate


TERMINAL = frozenset({Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ABORTED})


class Kind(StrEnum):
    CANARY = "canary"
    BLUE_GREEN = "blue_green"
    AB = "ab"
    SHADOW = "shadow"


class Verdict(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


# --- what is observed ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Signals:
    """One version's agent signals over the current analysis window."""

    requests: int = 0
    errors: int = 0
    p95_latency_ms: float | None = None
    p95_ttft_ms: float | None = None
    cost: float = 0.0  #: summed over the window's runs
    tool_calls: int = 0
    tool_failures: int = 0
    feedback_up: int = 0
    feedback_down: int = 0
    eval_score: float | None = None  #: 0..1, from the newest eval of this version

    def value(self, metric: str) -> float | None:
        """A metric by name; None when it has no data yet."""
        getter = _METRICS.get(metric)
        if getter is None:
            raise ValueError(f"unknown metric {metric!r}; expected one of {sorted(_METRICS)}")
        return getter(self)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


_METRICS: dict[str, Callable[[Signals], float | None]] = {
    "error_rate": lambda s: _ratio(s.errors, s.requests),
    "p95_latency_ms": lambda s: s.p95_latency_ms,
    "p95_ttft_ms": lambda s: s.p95_ttft_ms,
    "cost_per_run": lambda s: s.cost / s.requests if s.requests else None,
    "tool_failure_rate": lambda s: _ratio(s.tool_failures, s.tool_calls),
    "feedback_score": lambda s: _ratio(s.feedback_up, s.feedback_up + s.feedback_down),
    "eval_score": lambda s: s.eval_score,
    "requests": lambda s: float(s.requests),
}
METRICS = frozenset(_METRICS)


class Command(StrEnum):
    PROMOTE = "promote"  #: resume a pause / advance one step / switch blue-green
    PROMOTE_FULL = "promote_full"  #: skip the remaining steps
    ABORT = "abort"  #: withdraw the candidate
    ROLLBACK = "rollback"  #: after a blue-green switch: back to the previous version


@dataclass(frozen=True, slots=True, kw_only=True)
class Observed:
    now: float
    candidate: Signals = field(default_factory=Signals)
    stable: Signals = field(default_factory=Signals)
    command: Command | None = None


# --- the spec -----------------------------------------------------------------------------

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """``metric op threshold`` must hold for the candidate. With ``relative``, the candidate's
    value is divided by stable's first (``p95_latency_ms <= 1.2`` relative: at most 20 %
    slower than stable)."""

    metric: str
    op: str
    threshold: float
    relative: bool = False

    def __post_init__(self) -> None:
        if self.metric not in _METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; expected one of {sorted(_METRICS)}")
        if self.op not in _OPS:
            raise ValueError(f"unknown operator {self.op!r}; expected one of {sorted(_OPS)}")

    def holds(self, candidate: Signals, stable: Signals) -> bool | None:
        """True or False, or None while there is no data to judge."""
        value = candidate.value(self.metric)
        if value is None:
            return None
        if self.relative:
            base = stable.value(self.metric)
            if base is None:
                return None
            value = value / base if base else (math.inf if value else 1.0)
        return _OPS[self.op](value, self.threshold)

    def describe(self) -> str:
        side = f"{self.metric}/stable" if self.relative else self.metric
        return f"{side} {self.op} {self.threshold:g}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Analysis:
    conditions: tuple[Condition, ...]
    min_requests: int = 20  #: fewer candidate requests in the window is inconclusive
    interval: float = 60.0  #: seconds between evaluations
    successes: int = 1  #: passing evaluations needed to complete the step
    failure_limit: int = 0  #: failures tolerated; one more rolls back
    max_inconclusive: int = 5  #: inconclusive evaluations in a row before pausing for a human


def evaluate(analysis: Analysis, candidate: Signals, stable: Signals) -> tuple[Verdict, str]:
    """One evaluation: the verdict and why (the first violated condition, or what is missing)."""
    if candidate.requests < analysis.min_requests:
        return Verdict.INCONCLUSIVE, (
            f"{candidate.requests} of {analysis.min_requests} requests needed"
        )
    missing: list[str] = []
    for condition in analysis.conditions:
        verdict = condition.holds(candidate, stable)
        if verdict is False:
            value = candidate.value(condition.metric)
            return Verdict.FAIL, f"{condition.describe()} failed (candidate {value:g})"
        if verdict is None:
            missing.append(condition.metric)
    if missing:
        return Verdict.INCONCLUSIVE, "no data yet for " + ", ".join(missing)
    return Verdict.PASS, "all conditions hold"


@dataclass(frozen=True, slots=True, kw_only=True)
class SetWeight:
    weight: int  #: percent of traffic to the candidate, 0..100


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause:
    seconds: float | None = None  #: None: until a human promotes


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisStep:
    analysis: Analysis


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalStep:
    """The candidate's newest eval score must reach ``min_score``; missing is inconclusive."""

    suite: str
    min_score: float = 1.0


Step = SetWeight | Pause | AnalysisStep | EvalStep


@dataclass(frozen=True, slots=True, kw_only=True)
class Strategy:
    kind: Kind = Kind.CANARY
    steps: tuple[Step, ...] = ()
    guard: Analysis | None = None  #: checked at every tick while progressing (canary)
    split: int = 50  #: A/B: percent to the candidate
    mirror: int = 10  #: shadow: percent of traffic mirrored to the candidate
    auto_promote: bool = True  #: shadow: promote when analysis passes (else pause)
    sticky: bool = True  #: a session keeps the version it started on until it ends

    def __post_init__(self) -> None:
        for step in self.steps:
            if isinstance(step, SetWeight) and not 0 <= step.weight <= 100:
                raise ValueError(f"set_weight must be 0..100, not {step.weight}")
        if not 0 <= self.split <= 100 or not 0 <= self.mirror <= 100:
            raise ValueError("split and mirror are percentages, 0..100")


# --- state, actions, decisions ------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutState:
    agent: str
    stable: str
    candidate: str | None
    kind: Kind
    phase: Phase
    step: int = 0  #: index of the current step
    weight: int = 0  #: percent of live traffic the candidate answers
    mirror: int = 0  #: percent of traffic mirrored to the candidate (shadow)
    step_started_at: float = 0.0
    last_evaluated_at: float | None = None
    successes: int = 0
    failures: int = 0
    inconclusive: int = 0
    guard_checked_at: float | None = None
    guard_failures: int = 0
    previous: str | None = None  #: the version before the last promotion, for a switch back
    reason: str = ""
    revision: int = 0  #: bumped on every change; the store's compare-and-set uses it


@dataclass(frozen=True, slots=True, kw_only=True)
class SetTraffic:
    weight: int
    mirror: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Promote:
    version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollback:
    to: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResetWindow:
    """Start a new analysis window: signals from now on only."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Notify:
    event: str  #: progressing, paused, promoted, rolled_back, aborted, step
    detail: str


Action = SetTraffic | Promote | Rollback | ResetWindow | Notify


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    state: RolloutState
    actions: tuple[Action, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.actions)


def start(strategy: Strategy, *, agent: str, stable: str, candidate: str, now: float) -> Decision:
    """A new rollout of ``candidate``: the first state and the actions that set it up."""
    state = RolloutState(
        agent=agent,
        stable=stable,
        candidate=candidate,
        kind=strategy.kind,
        phase=Phase.PROGRESSING,
        step_started_at=now,
    )
    actions: list[Action] = [Notify(event="progressing", detail=f"rollout of {candidate} began")]
    if strategy.kind is Kind.AB:
        state = replace(state, weight=strategy.split)
    elif strategy.kind is Kind.SHADOW:
        state = replace(state, mirror=strategy.mirror)
    elif strategy.kind is Kind.BLUE_GREEN:
        state = replace(state, phase=Phase.PAUSED, reason="preview: promote to switch")
    actions.insert(0, SetTraffic(weight=state.weight, mirror=state.mirror))
    actions.append(ResetWindow())
    return Decision(state=state, actions=tuple(actions))


def decide(strategy: Strategy, state: RolloutState, observed: Observed) -> Decision:
    """The next state and the actions to reach it. Idempotent for a terminal state."""
    if observed.command is not None:
        return _command(strategy, state, observed)
    if state.phase in TERMINAL or state.phase is Phase.PAUSED:
        return Decision(state=state)  # only a command moves these on
    guard = strategy.guard
    noted: tuple[Action, ...] = ()
    if guard is not None and (
        state.guard_checked_at is None or observed.now - state.guard_checked_at >= guard.interval
    ):
        verdict, why = evaluate(guard, observed.candidate, observed.stable)
        state = replace(state, guard_checked_at=observed.now, revision=state.revision + 1)
        if verdict is Verdict.FAIL:
            failures = state.guard_failures + 1
            if failures > guard.failure_limit:
                return _rollback(state, f"guard: {why}", observed.now)
            state = replace(state, guard_failures=failures, reason=f"guard: {why}")
            noted = (Notify(event="analysis_failed", detail=state.reason),)
    if state.kind is Kind.AB:
        decision = Decision(state=state)  # a human concludes an experiment
    elif state.kind is Kind.SHADOW:
        decision = _shadow(strategy, state, observed)
    else:
        decision = _step(strategy, state, observed)
    return Decision(state=decision.state, actions=(*noted, *decision.actions))


def _step(strategy: Strategy, state: RolloutState, observed: Observed) -> Decision:
    if state.step >= len(strategy.steps):
        return _promote(state, "all steps passed", observed.now)
    step = strategy.steps[state.step]
    if isinstance(step, SetWeight):
        advanced = _advance(replace(state, weight=step.weight), observed.now)
        rest = _step(strategy, advanced.state, observed)
        return Decision(
            state=rest.state,
            actions=(
                SetTraffic(weight=step.weight, mirror=state.mirror),
                *advanced.actions,  # a new window for the new weight, and the step's event
                *rest.actions,
            ),
        )
    if isinstance(step, Pause):
        if step.seconds is None:
            paused = replace(
                state,
                phase=Phase.PAUSED,
                reason="paused until promoted",
                revision=state.revision + 1,
            )
            return Decision(state=paused, actions=(Notify(event="paused", detail=paused.reason),))
        if observed.now - state.step_started_at >= step.seconds:
            return _continue(strategy, _advance(state, observed.now), observed)
        return Decision(state=state)
    if isinstance(step, EvalStep):
        score = observed.candidate.eval_score
        if score is None:
            return Decision(state=state)
        if score >= step.min_score:
            return _continue(strategy, _advance(state, observed.now), observed)
        return _rollback(
            state, f"eval {step.suite}: score {score:g} < {step.min_score:g}", observed.now
        )
    return _analyse(strategy, state, step.analysis, observed)


def _analyse(
    strategy: Strategy, state: RolloutState, analysis: Analysis, observed: Observed
) -> Decision:
    due = state.last_evaluated_at is None or (
        observed.now - state.last_evaluated_at >= analysis.interval
    )
    if not due or observed.now - state.step_started_at < analysis.interval:
        return Decision(state=state)
    verdict, why = evaluate(analysis, observed.candidate, observed.stable)
    state = replace(state, last_evaluated_at=observed.now, revision=state.revision + 1)
    if verdict is Verdict.FAIL:
        failures = state.failures + 1
        if failures > analysis.failure_limit:
            return _rollback(state, why, observed.now)
        state = replace(state, failures=failures, successes=0, inconclusive=0, reason=why)
        return Decision(state=state, actions=(Notify(event="analysis_failed", detail=why),))
    if verdict is Verdict.INCONCLUSIVE:
        count = state.inconclusive + 1
        if count >= analysis.max_inconclusive:
            paused = replace(
                state, phase=Phase.PAUSED, inconclusive=0, reason=f"inconclusive: {why}"
            )
            return Decision(state=paused, actions=(Notify(event="paused", detail=paused.reason),))
        return Decision(state=replace(state, inconclusive=count, reason=why))
    successes = state.successes + 1
    if successes < analysis.successes:
        return Decision(state=replace(state, successes=successes, inconclusive=0, reason=why))
    return _continue(strategy, _advance(state, observed.now), observed)


def _shadow(strategy: Strategy, state: RolloutState, observed: Observed) -> Decision:
    steps = [s for s in strategy.steps if isinstance(s, AnalysisStep)]
    if not steps:
        return Decision(state=state)
    decision = _analyse(
        replace(strategy, steps=(steps[0],)), replace(state, step=0), steps[0].analysis, observed
    )
    if decision.state.phase is Phase.PROMOTED and not strategy.auto_promote:
        paused = replace(
            state,
            phase=Phase.PAUSED,
            last_evaluated_at=observed.now,
            reason="shadow analysis passed: promote to ship",
            revision=state.revision + 1,
        )
        return Decision(state=paused, actions=(Notify(event="paused", detail=paused.reason),))
    return decision


def _continue(strategy: Strategy, advanced: Decision, observed: Observed) -> Decision:
    rest = _step(strategy, advanced.state, observed)
    return Decision(state=rest.state, actions=(*advanced.actions, *rest.actions))


def _advance(state: RolloutState, now: float) -> Decision:
    nxt = replace(
        state,
        step=state.step + 1,
        step_started_at=now,
        last_evaluated_at=None,
        successes=0,
        inconclusive=0,
        reason="",
        revision=state.revision + 1,
    )
    return Decision(
        state=nxt, actions=(ResetWindow(), Notify(event="step", detail=f"step {nxt.step}"))
    )


def _promote(state: RolloutState, why: str, now: float) -> Decision:
    assert state.candidate is not None
    done = replace(
        state,
        phase=Phase.PROMOTED,
        previous=state.stable,
        stable=state.candidate,
        weight=100,
        mirror=0,
        reason=why,
        step_started_at=now,
        revision=state.revision + 1,
    )
    return Decision(
        state=done,
        actions=(
            SetTraffic(weight=100),
            Promote(version=state.candidate),
            Notify(event="promoted", detail=why),
        ),
    )


def _rollback(
    state: RolloutState, why: str, now: float, *, phase: Phase = Phase.ROLLED_BACK
) -> Decision:
    back = replace(
        state,
        phase=phase,
        weight=0,
        mirror=0,
        reason=why,
        step_started_at=now,
        revision=state.revision + 1,
    )
    return Decision(
        state=back,
        actions=(
            SetTraffic(weight=0),
            Rollback(to=state.stable, reason=why),
            Notify(event=phase.value, detail=why),
        ),
    )


def _command(strategy: Strategy, state: RolloutState, observed: Observed) -> Decision:
    command, now = observed.command, observed.now
    if command is Command.ROLLBACK:
        if state.phase is Phase.PROMOTED and state.previous is not None:
            back = replace(
                state,
                phase=Phase.ROLLED_BACK,
                stable=state.previous,
                candidate=state.stable,
                previous=None,
                weight=0,
                reason="rolled back by a human",
                revision=state.revision + 1,
            )
            return Decision(
                state=back,
                actions=(
                    SetTraffic(weight=0),
                    Rollback(to=back.stable, reason=back.reason),
                    Notify(event="rolled_back", detail=back.reason),
                ),
            )
        command = Command.ABORT
    if state.phase in TERMINAL:
        return Decision(state=state)
    if command is Command.ABORT:
        return _rollback(state, "aborted by a human", now, phase=Phase.ABORTED)
    if command is Command.PROMOTE_FULL or state.kind in (Kind.BLUE_GREEN, Kind.AB, Kind.SHADOW):
        return _promote(state, "promoted by a human", now)
    # canary PROMOTE: resume a pause, or skip the current step
    resumed = replace(state, phase=Phase.PROGRESSING, reason="")
    return _continue(strategy, _advance(resumed, now), replace(observed, command=None))


# --- traffic assignment -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignment:
    version: str  #: answers the request
    shadow: str | None = None  #: also receives a mirrored copy, whose answer is never sent


def bucket(key: str, salt: str = "") -> int:
    """A stable bucket in 0..9999 for a sticky key (session or user id)."""
    digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000


def assign(
    state: RolloutState | None,
    *,
    current: str,
    key: str | None,
    preview: bool = False,
    pinned: str | None = None,
) -> Assignment:
    """Which version answers a request. ``current``: the version when no rollout runs;
    ``key``: the sticky key (session, else user; None: the request is hashed per call by the
    caller passing a random key); ``preview``: the preview header was sent (blue-green);
    ``pinned``: the version the session started on (stickiness wins over weights)."""
    if state is None or state.candidate is None:
        return Assignment(version=pinned or current)
    if state.phase in (Phase.ROLLED_BACK, Phase.ABORTED):
        return Assignment(version=state.stable)  # even sessions that began on the candidate
    if state.phase is Phase.PROMOTED:
        return Assignment(version=pinned or state.stable)
    point = bucket(key or "", state.candidate)
    shadow = state.candidate if state.mirror and point < state.mirror * 100 else None
    if pinned is not None and pinned in (state.stable, state.candidate):
        # a session on stable is mirrored like any other request
        return Assignment(version=pinned, shadow=shadow if pinned == state.stable else None)
    if preview:
        return Assignment(version=state.candidate)
    if point < state.weight * 100:
        return Assignment(version=state.candidate)
    return Assignment(version=state.stable, shadow=shadow)


def compare(candidate: Signals, stable: Signals) -> Mapping[str, tuple[float | None, float | None]]:
    """The A/B report: every metric for both variants."""
    return {name: (candidate.value(name), stable.value(name)) for name in sorted(_METRICS)}
