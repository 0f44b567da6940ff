"""Release strategies and rollout states as plain JSON-able dicts (``wayport.yaml``, the
admin API and the store all speak this form)::

    >>> s = strategy_from_dict({"kind": "canary", "steps": [{"set_weight": 20},
    ...     {"analysis": {"conditions": ["error_rate <= 0.05"], "min_requests": 10}}]})
    >>> s.steps[1].analysis.conditions[0].describe()
    'error_rate <= 0.05'
    >>> strategy_from_dict(strategy_to_dict(s)) == s
    True

A condition is ``"metric op threshold"`` (append `` relative`` to compare with stable) or a
dict ``{metric, op, threshold, relative}``. A pause is ``{"pause": {"seconds": 60}}`` or
``{"pause": {}}`` (until promoted). Bad input raises ``ValueError`` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields, replace
from typing import Any

from wayport.core.agent import AgentSpec
from wayport.core.release import (
    Analysis,
    AnalysisStep,
    Condition,
    EvalStep,
    Kind,
    Pause,
    Phase,
    RolloutState,
    SetWeight,
    Step,
    Strategy,
)

__all__ = [
    "spec_with",
    "state_from_dict",
    "state_to_dict",
    "strategy_from_dict",
    "strategy_to_dict",
]


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    return value


def _condition(value: object, where: str) -> Condition:
    if isinstance(value, str):
        parts = value.split()
        relative = len(parts) == 4 and parts[3] == "relative"
        if len(parts) != 3 and not relative:
            raise ValueError(f"{where}: expected 'metric op threshold [relative]', got {value!r}")
        try:
            threshold = float(parts[2])
        except ValueError:
            raise ValueError(f"{where}: threshold {parts[2]!r} is not a number") from None
        return Condition(metric=parts[0], op=parts[1], threshold=threshold, relative=relative)
    raw = _mapping(value, where)
    unknown = set(raw) - {"metric", "op", "threshold", "relative"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    return Condition(
        metric=str(raw.get("metric", "")),
        op=str(raw.get("op", "")),
        threshold=_number(raw.get("threshold"), f"{where}.threshold"),
        relative=bool(raw.get("relative", False)),
    )


_ANALYSIS_NUMBERS = {"min_requests", "interval", "successes", "failure_limit", "max_inconclusive"}


def _analysis(value: object, where: str) -> Analysis:
    raw = _mapping(value, where)
    unknown = set(raw) - _ANALYSIS_NUMBERS - {"conditions"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    conditions = raw.get("conditions")
    if not isinstance(conditions, list) or not conditions:
        raise ValueError(f"{where}.conditions: at least one condition is needed")
    options: dict[str, Any] = {}
    for key in _ANALYSIS_NUMBERS & set(raw):
        if key == "interval":
            options[key] = _number(raw[key], f"{where}.{key}")
        else:
            options[key] = _int(raw[key], f"{where}.{key}")
    return Analysis(
        conditions=tuple(
            _condition(c, f"{where}.conditions[{i}]") for i, c in enumerate(conditions)
        ),
        **options,
    )


def _step(value: object, where: str) -> Step:
    raw = _mapping(value, where)
    if len(raw) != 1:
        raise ValueError(f"{where}: one of set_weight, pause, analysis, eval per step")
    [(kind, body)] = raw.items()
    if kind == "set_weight":
        return SetWeight(weight=_int(body, f"{where}.set_weight"))
    if kind == "pause":
        seconds = _mapping(body or {}, f"{where}.pause").get("seconds")
        return Pause(seconds=None if seconds is None else _number(seconds, f"{where}.seconds"))
    if kind == "analysis":
        return AnalysisStep(analysis=_analysis(body, f"{where}.analysis"))
    if kind == "eval":
        spec = _mapping(body, f"{where}.eval")
        suite = spec.get("suite")
        if not isinstance(suite, str) or not suite:
            raise ValueError(f"{where}.eval.suite: a suite name is needed")
        score = _number(spec.get("min_score", 1.0), f"{where}.eval.min_score")
        return EvalStep(suite=suite, min_score=score)
    raise ValueError(f"{where}: unknown step {kind!r}; expected set_weight, pause, analysis, eval")


_STRATEGY_KEYS = {"kind", "steps", "guard", "split", "mirror", "auto_promote", "sticky"}


def strategy_from_dict(value: object, where: str = "strategy") -> Strategy:
    raw = _mapping(value, where)
    unknown = set(raw) - _STRATEGY_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    try:
        kind = Kind(str(raw.get("kind", "canary")).replace("-", "_"))
    except ValueError:
        raise ValueError(
            f"{where}.kind: expected one of {[k.value for k in Kind]}, got {raw.get('kind')!r}"
        ) from None
    steps = raw.get("steps") or []
    if not isinstance(steps, list):
        raise ValueError(f"{where}.steps: expected a list")
    guard = raw.get("guard")
    try:
        return Strategy(
            kind=kind,
            steps=tuple(_step(s, f"{where}.steps[{i}]") for i, s in enumerate(steps)),
            guard=None if guard is None else _analysis(guard, f"{where}.guard"),
            split=_int(raw.get("split", 50), f"{where}.split"),
            mirror=_int(raw.get("mirror", 10), f"{where}.mirror"),
            auto_promote=bool(raw.get("auto_promote", True)),
            sticky=bool(raw.get("sticky", True)),
        )
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message if message.startswith(where) else f"{where}: {message}") from None


def _analysis_dict(analysis: Analysis) -> dict[str, Any]:
    out = asdict(analysis)
    out["conditions"] = [asdict(c) for c in analysis.conditions]
    return out


def _step_dict(step: Step) -> dict[str, Any]:
    if isinstance(step, SetWeight):
        return {"set_weight": step.weight}
    if isinstance(step, Pause):
        return {"pause": {} if step.seconds is None else {"seconds": step.seconds}}
    if isinstance(step, AnalysisStep):
        return {"analysis": _analysis_dict(step.analysis)}
    return {"eval": {"suite": step.suite, "min_score": step.min_score}}


def strategy_to_dict(strategy: Strategy) -> dict[str, Any]:
    return {
        "kind": strategy.kind.value,
        "steps": [_step_dict(s) for s in strategy.steps],
        "guard": None if strategy.guard is None else _analysis_dict(strategy.guard),
        "split": strategy.split,
        "mirror": strategy.mirror,
        "auto_promote": strategy.auto_promote,
        "sticky": strategy.sticky,
    }


_STATE_FIELDS = tuple(f.name for f in fields(RolloutState))


def state_to_dict(state: RolloutState) -> dict[str, Any]:
    out = {name: getattr(state, name) for name in _STATE_FIELDS}
    out["kind"], out["phase"] = state.kind.value, state.phase.value
    return out


def state_from_dict(value: Mapping[str, Any]) -> RolloutState:
    known = {k: v for k, v in value.items() if k in _STATE_FIELDS}
    known["kind"], known["phase"] = Kind(known["kind"]), Phase(known["phase"])
    return RolloutState(**known)


_SPEC_FIELDS = {"model", "description", "instructions", "params", "tools"}


def spec_with(base: AgentSpec, changes: Mapping[str, Any]) -> AgentSpec:
    """``base`` with ``changes`` to its behaviour (``model``, ``instructions``, ``params``,
    ``tools``, ``description``): a candidate version of the same agent."""
    unknown = set(changes) - _SPEC_FIELDS - {"name"}
    if unknown:
        raise ValueError(f"spec: unknown or unchangeable fields {sorted(unknown)}")
    if changes.get("name", base.name) != base.name:
        raise ValueError(f"spec.name: {changes['name']!r} is not {base.name!r}")
    out: dict[str, Any] = {}
    for key in ("model", "description", "instructions"):
        if key in changes:
            if not isinstance(changes[key], str) or (key == "model" and not changes[key]):
                raise ValueError(f"spec.{key}: expected a string")
            out[key] = changes[key]
    if "params" in changes:
        out["params"] = dict(_mapping(changes["params"], "spec.params"))
    if "tools" in changes:
        tools = changes["tools"]
        if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
            raise ValueError("spec.tools: expected a list of tool names")
        out["tools"] = tuple(tools)
    return replace(base, **out)
