"""Workflow definitions: parsed from plain data (YAML or Python dicts), validated, versioned.

    definition = parse_workflow("triage", {
        "inputs": {"ticket": {"required": True}},
        "steps": [
            {"id": "classify",
             "llm": {"model": "smollm2", "prompt": "Classify: {{ input.ticket }}"}},
            {"id": "lookup",
             "tool": {"name": "lookup_customer", "args": {"id": "{{ input.ticket }}"}},
             "retry": {"max_attempts": 3, "backoff": 0.5}, "timeout": 10},
            {"id": "ok", "approval": {"message": "{{ steps.classify.output }}"}},
        ],
    })

Each step has one kind: ``llm``, ``agent``, ``tool``, ``workflow`` (run by the engine, with
retries and timeouts), ``branch``, ``join``, ``map``, ``approval`` and ``wait`` (decided by the
scheduler, ``wayport.core.workflow_plan``). A step runs once every step it ``needs`` or reads
(``{{ steps.x.output }}``) is done; ``branch`` gates the steps it names in ``then``/``else``.
Validation reports every problem at once, naming the step: unknown steps, cycles, inputs read
but not declared, missing or unknown fields. ``version`` is a hash of the definition's content,
so a run started on one version finishes on it after the definition changes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from wayport.core.errors import InvalidRequest
from wayport.core.workflow_template import TemplateError, references

__all__ = [
    "EFFECT_KINDS",
    "InputDef",
    "RetryPolicy",
    "StepDef",
    "StepKind",
    "WorkflowDef",
    "WorkflowInvalid",
    "check_input",
    "parse_workflow",
]

_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


class WorkflowInvalid(InvalidRequest):
    """A definition that cannot run; the message lists every problem found."""

    default_code = "invalid_workflow"


class StepKind(StrEnum):
    LLM = "llm"  #: a prompt template sent to a model through the router
    AGENT = "agent"  #: one run of an agent, in a session of the workflow run
    TOOL = "tool"  #: a registered tool, called with an idempotency key
    WORKFLOW = "workflow"  #: a sub-workflow, a run of its own that this step waits for
    BRANCH = "branch"  #: picks ``then`` or ``else``; the other side is skipped
    MAP = "map"  #: one inner step per list item, at most ``concurrency`` at a time
    JOIN = "join"  #: waits for its needs, skipped or not, and collects their outputs
    APPROVAL = "approval"  #: pauses until approved through the API
    WAIT = "wait"  #: a durable timer


EFFECT_KINDS = frozenset({StepKind.LLM, StepKind.AGENT, StepKind.TOOL, StepKind.WORKFLOW})
"""Kinds the engine executes (at least once); the others are decisions on stored state."""

# required, optional parameter names per kind
_PARAMS: dict[StepKind, tuple[frozenset[str], frozenset[str]]] = {
    StepKind.LLM: (
        frozenset({"model", "prompt"}),
        frozenset({"system", "max_tokens", "temperature", "format"}),
    ),
    StepKind.AGENT: (frozenset({"agent", "input"}), frozenset()),
    StepKind.TOOL: (frozenset({"name"}), frozenset({"args"})),
    StepKind.WORKFLOW: (frozenset({"workflow"}), frozenset({"input"})),
    StepKind.BRANCH: (frozenset({"if"}), frozenset({"then", "else"})),
    StepKind.MAP: (frozenset({"over", "step"}), frozenset({"concurrency"})),
    StepKind.JOIN: (frozenset(), frozenset()),
    StepKind.APPROVAL: (frozenset(), frozenset({"message"})),
    StepKind.WAIT: (frozenset({"seconds"}), frozenset()),
}
_COMMON = frozenset({"id", "needs", "retry", "timeout", "description"})
_TOP = frozenset({"description", "inputs", "steps", "output"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    max_attempts: int = 1  #: executions in all; 1 is no retry
    backoff: float = 1.0  #: seconds before the first retry, doubling each time
    backoff_max: float = 60.0

    def delay(self, attempt: int, jitter: float) -> float:
        """Seconds before the retry after failed ``attempt`` (1-based), with equal jitter as
        ``core.routing.backoff_delay``: half the exponential ceiling, plus up to half again."""
        ceiling = min(self.backoff_max, self.backoff * 2.0 ** min(max(attempt - 1, 0), 32))
        return ceiling * (0.5 + 0.5 * min(max(jitter, 0.0), 1.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class StepDef:
    id: str
    kind: StepKind
    params: Mapping[str, Any] = field(default_factory=dict)  #: templates, rendered per run
    needs: tuple[str, ...] = ()  #: as written; ``WorkflowDef.deps`` adds what templates read
    retry: RetryPolicy = RetryPolicy()
    timeout: float | None = None
    inner: StepDef | None = None  #: a ``map`` step's per-item step


@dataclass(frozen=True, slots=True, kw_only=True)
class InputDef:
    name: str
    required: bool = False
    default: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowDef:
    name: str
    version: str  #: content hash of ``source``
    steps: tuple[StepDef, ...]
    inputs: Mapping[str, InputDef] = field(default_factory=dict)
    output: Any = None  #: a template; ``None``: the outputs of the steps nothing depends on
    description: str = ""
    source: Mapping[str, Any] = field(default_factory=dict)  #: the data it was parsed from
    deps: Mapping[str, frozenset[str]] = field(default_factory=dict)
    gates: Mapping[str, tuple[str, str]] = field(default_factory=dict)  #: step -> (branch, side)
    children: tuple[str, ...] = ()  #: the sub-workflows it starts, by name

    def step(self, step_id: str) -> StepDef:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def leaves(self) -> list[str]:
        """Steps no other step depends on, in definition order."""
        used = {d for deps in self.deps.values() for d in deps}
        return [s.id for s in self.steps if s.id not in used]


def _version(name: str, source: Mapping[str, Any]) -> str:
    canonical = json.dumps({"name": name, **source}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class _Problems:
    def __init__(self, name: str) -> None:
        self.name = name
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")

    def raise_any(self) -> None:
        if self.items:
            lines = "\n  ".join(self.items)
            raise WorkflowInvalid(f"workflow {self.name!r} is invalid:\n  {lines}", param=self.name)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _retry(data: Any, where: str, problems: _Problems) -> RetryPolicy:
    if data is None:
        return RetryPolicy()
    if not isinstance(data, Mapping) or set(data) - {"max_attempts", "backoff", "backoff_max"}:
        problems.add(where, "retry takes max_attempts, backoff and backoff_max")
        return RetryPolicy()
    attempts = data.get("max_attempts", 1)
    backoff = data.get("backoff", 1.0)
    backoff_max = data.get("backoff_max", 60.0)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= 100:
        problems.add(where, "retry.max_attempts must be an integer from 1 to 100")
        attempts = 1
    if not _number(backoff) or backoff < 0 or not _number(backoff_max) or backoff_max < 0:
        problems.add(where, "retry.backoff and retry.backoff_max must be seconds >= 0")
        backoff, backoff_max = 1.0, 60.0
    return RetryPolicy(max_attempts=attempts, backoff=float(backoff), backoff_max=backoff_max)


def _step(data: Any, where: str, problems: _Problems, *, inner: bool = False) -> StepDef | None:
    if not isinstance(data, Mapping):
        problems.add(where, "a step is a mapping with an id and one kind")
        return None
    step_id = data.get("id", "item" if inner else None)
    if not isinstance(step_id, str) or not _ID.match(step_id):
        problems.add(where, "id must be a name of letters, digits, '_' and '-' (max 64)")
        return None
    where = f"{where} ({step_id})"
    kinds = [k for k in data if k in _PARAMS]
    if len(kinds) != 1:
        names = ", ".join(_PARAMS)
        problems.add(where, f"give exactly one kind of {names}; found {kinds or 'none'}")
        return None
    kind = StepKind(kinds[0])
    unknown = set(data) - _COMMON - {kinds[0]}
    if unknown:
        problems.add(where, f"unknown fields {sorted(unknown)}")
    params = data[kinds[0]]
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        problems.add(where, f"{kind.value} takes a mapping of parameters")
        params = {}
    required, optional = _PARAMS[kind]
    missing = required - set(params)
    if missing:
        problems.add(where, f"{kind.value} needs {sorted(missing)}")
    extra = set(params) - required - optional
    if extra:
        problems.add(where, f"{kind.value} does not take {sorted(extra)}")
    needs = data.get("needs", ())
    if isinstance(needs, str):
        needs = (needs,)
    if not isinstance(needs, list | tuple) or not all(isinstance(n, str) for n in needs):
        problems.add(where, "needs must be a step id or a list of step ids")
        needs = ()
    timeout = data.get("timeout")
    if timeout is not None and (not _number(timeout) or timeout <= 0):
        problems.add(where, "timeout must be seconds > 0")
        timeout = None
    inner_step: StepDef | None = None
    if kind is StepKind.MAP:
        inner_step = _step(params.get("step"), f"{where}.map.step", problems, inner=True)
        if inner_step is not None and inner_step.kind not in EFFECT_KINDS:
            problems.add(where, "map.step must be an llm, agent, tool or workflow step")
        concurrency = params.get("concurrency", 4)
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            problems.add(where, "map.concurrency must be an integer >= 1")
        params = {k: v for k, v in params.items() if k != "step"}
    if kind is StepKind.BRANCH:
        condition = params.get("if")
        if isinstance(condition, str) and not condition.strip().startswith("{{"):
            # one form, so that the steps a bare condition reads become dependencies too
            params = {**params, "if": "{{ " + condition + " }}"}
        elif isinstance(condition, bool):
            params = {**params, "if": "{{ true }}" if condition else "{{ false }}"}
        elif condition is not None and not isinstance(condition, str):
            problems.add(where, "branch.if must be an expression")
        for side in ("then", "else"):
            ids = params.get(side, [])
            if isinstance(ids, str):
                ids = [ids]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                problems.add(where, f"branch.{side} must be a list of step ids")
                ids = []
            params = {**params, side: list(ids)}
    if kind is StepKind.LLM and params.get("format", "text") not in ("text", "json"):
        problems.add(where, "llm.format is text or json")
    if kind is StepKind.WAIT and not isinstance(params.get("seconds"), int | float | str):
        problems.add(where, "wait.seconds must be a number or a template")
    return StepDef(
        id=step_id,
        kind=kind,
        params=dict(params),
        needs=tuple(needs),
        retry=_retry(data.get("retry"), where, problems),
        timeout=None if timeout is None else float(timeout),
        inner=inner_step,
    )


def _inputs(data: Any, problems: _Problems) -> dict[str, InputDef]:
    if data is None:
        return {}
    if isinstance(data, list):
        data = {str(n): {} for n in data}
    if not isinstance(data, Mapping):
        problems.add("inputs", "a mapping of input names to {required, default}")
        return {}
    found: dict[str, InputDef] = {}
    for name, spec in data.items():
        spec = spec if spec is not None else {}
        if not isinstance(spec, Mapping) or set(spec) - {"required", "default", "description"}:
            problems.add(f"inputs.{name}", "takes required, default and description")
            continue
        found[str(name)] = InputDef(
            name=str(name), required=bool(spec.get("required", False)), default=spec.get("default")
        )
    return found


def _reads(
    template: Any, where: str, problems: _Problems, inputs: Mapping[str, InputDef], *, item: bool
) -> set[str]:
    """The steps a template reads; reports unknown roots and undeclared inputs."""
    steps: set[str] = set()
    try:
        paths = list(references(template))
    except TemplateError as exc:
        problems.add(where, exc.message)
        return steps
    for path in paths:
        root = path[0]
        if root == "steps" and len(path) >= 2:
            steps.add(path[1])
            if len(path) >= 3 and path[2] not in ("output", "status"):
                problems.add(where, f"steps.{path[1]}.{path[2]}: a step has output and status")
        elif root == "input" and len(path) >= 2:
            if path[1] not in inputs:
                problems.add(where, f"reads input.{path[1]}, which is not declared under inputs")
        elif not (
            root == "input"
            or (root == "run" and path[1:] in ((), ("id",)))
            or (root in ("item", "index") and item)
        ):
            problems.add(where, f"{'.'.join(path)} is unknown; use input., steps. or item")
    return steps


def parse_workflow(name: str, data: Mapping[str, Any]) -> WorkflowDef:
    """Parse and validate one definition; raises ``WorkflowInvalid`` listing every problem."""
    problems = _Problems(name)
    if not _NAME.match(name):
        problems.add("name", "letters, digits, '_', '-' and '.' (max 100)")
    if not isinstance(data, Mapping):
        problems.add("definition", "a mapping with steps")
        problems.raise_any()
    unknown = set(data) - _TOP
    if unknown:
        problems.add("definition", f"unknown fields {sorted(unknown)}")
    inputs = _inputs(data.get("inputs"), problems)
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.add("steps", "a non-empty list of steps")
        raw_steps = []
    steps: list[StepDef] = []
    for i, raw in enumerate(raw_steps):
        parsed = _step(raw, f"steps[{i}]", problems)
        if parsed is not None:
            if any(s.id == parsed.id for s in steps):
                problems.add(f"steps[{i}]", f"a second step with id {parsed.id!r}")
            else:
                steps.append(parsed)
    ids = {s.id for s in steps}
    deps: dict[str, set[str]] = {}
    gates: dict[str, tuple[str, str]] = {}
    children: set[str] = set()
    for s in steps:
        where = f"step {s.id}"
        found = set(s.needs) | _reads(s.params, where, problems, inputs, item=False)
        if s.inner is not None:
            found |= _reads(s.inner.params, where, problems, inputs, item=True)
        for inner in (s, s.inner):
            if inner is not None and inner.kind is StepKind.WORKFLOW:
                target = inner.params.get("workflow")
                if isinstance(target, str):
                    children.add(target)
        for dep in sorted(found - ids):
            problems.add(where, f"depends on unknown step {dep!r}")
        if s.id in found:
            problems.add(where, "depends on itself")
        deps[s.id] = (found & ids) - {s.id}
    for s in steps:
        if s.kind is not StepKind.BRANCH:
            continue
        for side in ("then", "else"):
            for target in s.params.get(side, []):
                if target not in ids or target == s.id:
                    problems.add(f"step {s.id}", f"branch.{side} names unknown step {target!r}")
                elif target in gates:
                    problems.add(f"step {target}", "is gated by more than one branch side")
                else:
                    gates[target] = (s.id, side)
                    deps[target].add(s.id)
    output = data.get("output")
    for dep in sorted(_reads(output, "output", problems, inputs, item=False) - ids):
        problems.add("output", f"reads unknown step {dep!r}")
    cycle = _cycle(deps)
    if cycle:
        problems.add("steps", "a cycle: " + " -> ".join(cycle))
    problems.raise_any()
    source = {k: data[k] for k in sorted(data) if k in _TOP}
    return WorkflowDef(
        name=name,
        version=_version(name, source),
        steps=tuple(steps),
        inputs=inputs,
        output=output,
        description=str(data.get("description") or ""),
        source=source,
        deps={k: frozenset(v) for k, v in deps.items()},
        gates=gates,
        children=tuple(sorted(children)),
    )


def _cycle(deps: Mapping[str, Iterable[str]]) -> list[str]:
    """One cycle as a path (first node repeated at the end), or ``[]``."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for dep in sorted(deps.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(deps):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def check_input(definition: WorkflowDef, given: Any) -> dict[str, Any]:
    """The run's input with defaults filled in; ``WorkflowInvalid`` naming missing ones."""
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise InvalidRequest("input must be an object", param="input")
    missing = [n for n, i in definition.inputs.items() if i.required and n not in given]
    if missing:
        raise InvalidRequest(
            f"workflow {definition.name!r} needs input {', '.join(sorted(missing))}",
            param="input",
            code="missing_input",
        )
    filled = {n: i.default for n, i in definition.inputs.items() if i.default is not None}
    return {**filled, **given}
