"""Eval suites: cases (an input and assertions on the answer) run against one agent version.
Parsing and the pure checks live here; running cases, JSON Schema validation and the
model-graded rubric live in ``wayport.service.evals``::

    >>> suite = parse_suite({"name": "smoke", "agent": "support", "cases": [
    ...     {"name": "greets", "input": "hi", "assert": [{"contains": "hello"},
    ...                                                  {"latency_ms": 5000}]}]})
    >>> answer = Answer(text="hello there", tool_calls=(), latency_ms=120.0, error=None)
    >>> [check(a, answer) for a in suite.cases[0].assertions]
    [(True, 'contains hello'), (True, 'latency 120 ms <= 5000 ms')]

Assertions: ``contains``, ``not_contains``, ``regex``, ``json_schema`` (the answer parses as
JSON and validates), ``tool_called`` (a tool name), ``latency_ms`` (an upper bound) and
``rubric`` (a judge model grades the answer against the text, pass or fail).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KINDS = frozenset(
    {"contains", "not_contains", "regex", "json_schema", "tool_called", "latency_ms", "rubric"}
)
EXTERNAL = frozenset({"json_schema", "rubric"})  #: checked by the service, not here


@dataclass(frozen=True, slots=True, kw_only=True)
class Assertion:
    kind: str
    value: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    name: str
    input: str
    assertions: tuple[Assertion, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Suite:
    name: str
    agent: str
    cases: tuple[Case, ...]
    judge: str | None = None  #: the model grading rubrics (None: the embedded default)


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    text: str | None
    tool_calls: tuple[str, ...]  #: names of the tools the run called
    latency_ms: float
    error: str | None  #: the run failed


def _assertion(raw: object, where: str) -> Assertion:
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise ValueError(f"{where}: one of {sorted(KINDS)} per assertion")
    [(kind, value)] = raw.items()
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown assertion {kind!r}; expected one of {sorted(KINDS)}")
    if kind == "latency_ms":
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{where}.latency_ms: a positive number of milliseconds")
    elif kind == "json_schema":
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}.json_schema: a JSON Schema object")
    elif not isinstance(value, str) or not value:
        raise ValueError(f"{where}.{kind}: a non-empty string")
    if kind == "regex":
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{where}.regex: {exc}") from None
    return Assertion(kind=kind, value=value)


def parse_suite(raw: object) -> Suite:
    """A suite from its YAML/JSON form; ``ValueError`` names the bad field."""
    if not isinstance(raw, Mapping):
        raise ValueError("suite: expected a mapping")
    name, agent = raw.get("name"), raw.get("agent")
    if not isinstance(name, str) or not name or not isinstance(agent, str) or not agent:
        raise ValueError("suite: 'name' and 'agent' are required strings")
    cases = raw.get("cases")
    if not isinstance(cases, Sequence) or isinstance(cases, str) or not cases:
        raise ValueError("suite.cases: at least one case is needed")
    parsed = []
    for i, case in enumerate(cases):
        where = f"cases[{i}]"
        if not isinstance(case, Mapping):
            raise ValueError(f"{where}: expected a mapping")
        text = case.get("input")
        if not isinstance(text, str) or not text:
            raise ValueError(f"{where}.input: a non-empty string")
        checks = case.get("assert") or []
        if not isinstance(checks, Sequence) or isinstance(checks, str):
            raise ValueError(f"{where}.assert: a list of assertions")
        parsed.append(
            Case(
                name=str(case.get("name") or f"case-{i + 1}"),
                input=text,
                assertions=tuple(
                    _assertion(a, f"{where}.assert[{j}]") for j, a in enumerate(checks)
                ),
            )
        )
    judge = raw.get("judge")
    return Suite(
        name=name,
        agent=agent,
        cases=tuple(parsed),
        judge=judge if isinstance(judge, str) and judge else None,
    )


def check(assertion: Assertion, answer: Answer) -> tuple[bool, str]:
    """A pure assertion's verdict and why. ``json_schema`` and ``rubric`` raise
    ``ValueError``: the service checks those."""
    kind, value, text = assertion.kind, assertion.value, answer.text or ""
    if kind in EXTERNAL:
        raise ValueError(f"{kind} is checked by the eval service")
    if kind == "contains":
        return value in text, f"contains {value}"
    if kind == "not_contains":
        return value not in text, f"does not contain {value}"
    if kind == "regex":
        return re.search(value, text) is not None, f"matches /{value}/"
    if kind == "tool_called":
        return value in answer.tool_calls, f"called {value}"
    bound = float(value)
    return answer.latency_ms <= bound, f"latency {answer.latency_ms:g} ms <= {bound:g} ms"


def score(results: Sequence[bool]) -> float:
    """The share of cases that passed (0..1)."""
    return sum(results) / len(results) if results else 0.0
