"""The workflow scheduler: stored step states in, what to do next out. Pure, so it is tested as
tables and the engine only applies its answer::

    plan = next_steps(definition, run_input, states, now=clock_now, in_flight=running)
    for record in plan.record: ...   # decisions to checkpoint (branch taken, join, skips …)
    for job in plan.execute: ...     # effect steps to run (llm, agent, tool, workflow)
    plan.finished / plan.failed / plan.wake_at

Step states are keyed by *path*: a step's id, or ``id[i]`` for item ``i`` of a map.
A step becomes ready when every dependency is done. A dependency that was skipped skips its
dependants too, except ``join``, which collects whatever completed. ``branch`` records the side
it took; the steps of the other side are skipped. A failed step (its retries spent) fails the
run. ``approval`` waits until something outside records it; ``wait`` until its time.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from wayport.core.workflow import StepDef, StepKind, WorkflowDef
from wayport.core.workflow_template import TemplateError, evaluate, render, truthy

__all__ = [
    "DONE",
    "Execute",
    "Plan",
    "Record",
    "StepState",
    "StepStatus",
    "context",
    "item_path",
    "next_steps",
    "run_output",
]


class StepStatus(StrEnum):
    RUNNING = "running"  #: being executed (or was, when the process died)
    WAITING = "waiting"  #: an approval, a timer or a sub-workflow
    RETRY = "retry"  #: an attempt failed; the next is due at ``wake_at``
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


DONE = frozenset({StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED})


@dataclass(frozen=True, slots=True, kw_only=True)
class StepState:
    status: StepStatus
    output: Any = None
    error: str | None = None
    attempt: int = 0  #: the attempt started last (1-based); interrupted ones are repeated
    wake_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Execute:
    """Run an effect step (at least once): ``params`` are already rendered."""

    path: str
    step: StepDef
    params: Mapping[str, Any]
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """A decision to checkpoint as the step's state."""

    path: str
    status: StepStatus
    output: Any = None
    error: str | None = None
    wake_at: float | None = None


@dataclass(slots=True, kw_only=True)
class Plan:
    execute: list[Execute] = field(default_factory=list)
    record: list[Record] = field(default_factory=list)
    finished: bool = False
    failed: str | None = None  #: why the run fails
    wake_at: float | None = None  #: the earliest timer or retry still ahead


def item_path(step_id: str, index: int) -> str:
    return f"{step_id}[{index}]"


def context(
    definition: WorkflowDef, run_input: Any, states: Mapping[str, StepState], run_id: str = ""
) -> dict[str, Any]:
    """What templates see: ``input``, ``steps.<id>.output|status`` and ``run.id``."""
    steps: dict[str, Any] = {}
    for s in definition.steps:
        state = states.get(s.id)
        if state is not None:
            steps[s.id] = {"output": state.output, "status": state.status.value}
    return {"input": run_input, "steps": steps, "run": {"id": run_id}}


def run_output(definition: WorkflowDef, ctx: Mapping[str, Any]) -> Any:
    """The run's output: the ``output`` template, else the outputs of the leaf steps (one leaf:
    its output itself)."""
    if definition.output is not None:
        return render(definition.output, ctx, strict=False)
    leaves = definition.leaves()
    outputs = {i: ctx["steps"].get(i, {}).get("output") for i in leaves}
    return outputs[leaves[0]] if len(leaves) == 1 else outputs


class _Planner:
    def __init__(
        self,
        definition: WorkflowDef,
        run_input: Any,
        states: Mapping[str, StepState],
        now: float,
        in_flight: Collection[str],
        run_id: str,
    ) -> None:
        self.d = definition
        self.states = states
        self.now = now
        self.in_flight = in_flight
        self.ctx = context(definition, run_input, states, run_id)
        self.plan = Plan()

    def _due(self, when: float | None) -> bool:
        if when is None or when <= self.now:
            return True
        self.plan.wake_at = when if self.plan.wake_at is None else min(self.plan.wake_at, when)
        return False

    def _effect(self, path: str, step: StepDef, ctx: Mapping[str, Any]) -> None:
        """Start, restart or retry one effect step at ``path`` as its state says."""
        state = self.states.get(path)
        if path in self.in_flight:
            return
        if state is None:
            attempt = 1
        elif state.status is StepStatus.RUNNING:
            attempt = state.attempt  # interrupted: the same attempt again
        elif state.status is StepStatus.RETRY and self._due(state.wake_at):
            attempt = state.attempt + 1
        else:
            return
        try:
            params = render(step.params, ctx)
        except TemplateError as exc:
            self.plan.record.append(Record(path=path, status=StepStatus.FAILED, error=exc.message))
            return
        self.plan.execute.append(Execute(path=path, step=step, params=params, attempt=attempt))

    def step(self, step: StepDef) -> None:
        state = self.states.get(step.id)
        if state is not None and state.status in DONE:
            return
        deps = self.d.deps.get(step.id, frozenset())
        dep_states = [self.states.get(d) for d in deps]
        if any(s is None or s.status not in DONE for s in dep_states):
            return
        gate = self.d.gates.get(step.id)
        if gate is not None:
            branch = self.states[gate[0]]
            taken = branch.output.get("taken") if isinstance(branch.output, Mapping) else None
            if branch.status is not StepStatus.COMPLETED or taken != gate[1]:
                self._skip(step.id, f"branch {gate[0]} did not take {gate[1]}")
                return
        if step.kind is not StepKind.JOIN:
            skipped = sorted(d for d in deps if self.states[d].status is StepStatus.SKIPPED)
            if skipped:
                self._skip(step.id, f"{skipped[0]} was skipped")
                return
        getattr(self, f"_{step.kind.value}")(step, state)

    def _skip(self, path: str, why: str) -> None:
        self.plan.record.append(Record(path=path, status=StepStatus.SKIPPED, error=why))

    def _done(self, path: str, output: Any) -> None:
        self.plan.record.append(Record(path=path, status=StepStatus.COMPLETED, output=output))

    def _fail(self, path: str, error: str) -> None:
        self.plan.record.append(Record(path=path, status=StepStatus.FAILED, error=error))

    # --- one method per kind -----------------------------------------------------------------

    def _llm(self, step: StepDef, state: StepState | None) -> None:
        self._effect(step.id, step, self.ctx)

    _agent = _tool = _workflow = _llm

    def _branch(self, step: StepDef, state: StepState | None) -> None:
        condition = str(step.params["if"]).strip()
        if condition.startswith("{{") and condition.endswith("}}"):
            condition = condition[2:-2]
        try:
            value = truthy(evaluate(condition, self.ctx, strict=False))
        except TemplateError as exc:
            self._fail(step.id, exc.message)
            return
        self._done(step.id, {"taken": "then" if value else "else", "value": value})

    def _join(self, step: StepDef, state: StepState | None) -> None:
        outputs = {
            d: self.states[d].output
            for d in sorted(self.d.deps.get(step.id, ()))
            if self.states[d].status is StepStatus.COMPLETED
        }
        self._done(step.id, outputs)

    def _approval(self, step: StepDef, state: StepState | None) -> None:
        if state is None:
            message = render(step.params.get("message", ""), self.ctx, strict=False)
            self.plan.record.append(
                Record(path=step.id, status=StepStatus.WAITING, output={"message": message})
            )

    def _wait(self, step: StepDef, state: StepState | None) -> None:
        if state is None:
            try:
                seconds = float(render(step.params["seconds"], self.ctx))
            except (TemplateError, TypeError, ValueError) as exc:
                self._fail(step.id, f"wait.seconds is not a number: {exc}")
                return
            wake_at = self.now + max(seconds, 0.0)
            self.plan.record.append(
                Record(path=step.id, status=StepStatus.WAITING, wake_at=wake_at)
            )
            self._due(wake_at)
        elif self._due(state.wake_at):
            self._done(step.id, {"waited_until": state.wake_at})

    def _map(self, step: StepDef, state: StepState | None) -> None:
        assert step.inner is not None
        try:
            items = render(step.params["over"], self.ctx)
        except TemplateError as exc:
            self._fail(step.id, exc.message)
            return
        if not isinstance(items, list):
            self._fail(step.id, f"map.over is {type(items).__name__}, not a list")
            return
        limit = int(step.params.get("concurrency", 4))
        busy = 0
        outputs: list[Any] = []
        startable: list[int] = []
        for i in range(len(items)):
            child = self.states.get(item_path(step.id, i))
            if child is None:
                startable.append(i)
            elif child.status is StepStatus.FAILED:
                self._fail(step.id, f"item {i} failed: {child.error}")
                return
            elif child.status is StepStatus.COMPLETED:
                outputs.append(child.output)
            else:
                busy += 1
                startable.append(i)
        if len(outputs) == len(items):
            self._done(step.id, outputs)
            return
        for i in startable:
            path = item_path(step.id, i)
            if self.states.get(path) is None:
                if busy >= limit:
                    continue
                busy += 1
            ctx = {**self.ctx, "item": items[i], "index": i}
            self._effect(path, step.inner, ctx)


def next_steps(
    definition: WorkflowDef,
    run_input: Any,
    states: Mapping[str, StepState],
    *,
    now: float,
    in_flight: Collection[str] = (),
    run_id: str = "",
) -> Plan:
    """What to do next for one run. ``in_flight``: paths being executed right now (a stored
    ``running`` state outside it was interrupted and runs again)."""
    planner = _Planner(definition, run_input, states, now, in_flight, run_id)
    for step in definition.steps:
        state = states.get(step.id)
        if state is not None and state.status is StepStatus.FAILED:
            return Plan(failed=f"step {step.id} failed: {state.error or 'no reason given'}")
    for step in definition.steps:
        planner.step(step)
    plan = planner.plan
    if (
        not plan.record
        and not plan.execute
        and all(s.id in states and states[s.id].status in DONE for s in definition.steps)
    ):
        plan.finished = True
    return plan
