"""The pure parts: templates, definition validation, the scheduler as tables, cron."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from wayport.core.cron import parse_cron
from wayport.core.errors import ConfigError, InvalidRequest
from wayport.core.workflow import RetryPolicy, WorkflowInvalid, check_input, parse_workflow
from wayport.core.workflow_plan import StepState, StepStatus, next_steps
from wayport.core.workflow_template import TemplateError, evaluate, render

C, F, S, R, W, T = (
    StepStatus.COMPLETED,
    StepStatus.FAILED,
    StepStatus.SKIPPED,
    StepStatus.RUNNING,
    StepStatus.WAITING,
    StepStatus.RETRY,
)
CTX = {"input": {"name": "Ada", "n": 3, "tags": ["a", "b"]}, "steps": {"x": {"output": {"y": 7}}}}


# --------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Hi {{ input.name }}", "Hi Ada"),
        ("{{ input.n }}", 3),
        ("{{ input.tags }}", ["a", "b"]),
        ("tags: {{ input.tags }}", 'tags: ["a","b"]'),
        ("{{ steps.x.output.y }}", 7),
        ("{{ input.tags.1 }}", "b"),
        ({"k": ["{{ input.name }}", 1]}, {"k": ["Ada", 1]}),
        ("no tags", "no tags"),
    ],
)
def test_render(template: Any, expected: Any) -> None:
    assert render(template, CTX) == expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('input.name == "Ada"', True),
        ("input.n > 2 and input.n <= 3", True),
        ('"a" in input.tags', True),
        ("not input.missing", True),
        ("input.n == 4 or steps.x.output.y == 7", True),
        ("(input.n == 4 or false) and true", False),
        ('input.name != "Ada"', False),
    ],
)
def test_evaluate(expr: str, expected: bool) -> None:
    assert evaluate(expr, CTX, strict=False) is expected


@pytest.mark.parametrize(
    "template",
    [
        "{{ input.missing }}",
        "{{ __import__('os') }}",
        "{{ input.name.__class__ }}",
        "{{ input.name + 1 }}",
        "{{ }}",
    ],
)
def test_templates_cannot_reach_python(template: str) -> None:
    with pytest.raises(TemplateError):
        render(template, CTX)


# --------------------------------------------------------------------------- definitions


def _wf(steps: list[dict[str, Any]], **extra: Any) -> Any:
    return parse_workflow("wf", {"steps": steps, **extra})


def _tool(step_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "tool": {"name": "t", "args": {}}, **extra}


@pytest.mark.parametrize(
    ("steps", "extra", "message"),
    [
        ([_tool("a", needs="b"), _tool("b", needs="a")], {}, "a cycle: a -> b -> a"),
        ([_tool("a", needs="zzz")], {}, "depends on unknown step 'zzz'"),
        (
            [{"id": "a", "tool": {"name": "t", "args": {"x": "{{ input.q }}"}}}],
            {},
            "reads input.q, which is not declared under inputs",
        ),
        ([{"id": "a", "llm": {"prompt": "hi"}}], {}, "llm needs ['model']"),
        ([{"id": "a", "tool": {"name": "t"}, "llm": {}}], {}, "exactly one kind"),
        ([_tool("a"), _tool("a")], {}, "a second step with id 'a'"),
        ([{"id": "a", "branch": {"if": "true", "then": ["nope"]}}], {}, "unknown step 'nope'"),
        ([_tool("a", retry={"max_attempts": 0})], {}, "retry.max_attempts"),
        ([_tool("a")], {"output": "{{ steps.b.output }}"}, "reads unknown step 'b'"),
        ([{"id": "a", "map": {"over": "[]", "step": {"approval": {}}}}], {}, "map.step must be"),
    ],
)
def test_invalid_definitions_say_why(
    steps: list[dict[str, Any]], extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        _wf(steps, **extra)
    assert message in caught.value.message


def test_templates_add_dependencies_and_version_is_content() -> None:
    wf = _wf(
        [_tool("a"), {"id": "b", "tool": {"name": "t", "args": {"v": "{{ steps.a.output }}"}}}]
    )
    assert wf.deps["b"] == {"a"}
    assert (
        wf.version
        == _wf(
            [_tool("a"), {"id": "b", "tool": {"name": "t", "args": {"v": "{{ steps.a.output }}"}}}]
        ).version
    )
    assert wf.version != _wf([_tool("a")]).version


def test_inputs_required_and_defaults() -> None:
    wf = parse_workflow(
        "wf",
        {"inputs": {"a": {"required": True}, "b": {"default": 2}}, "steps": [_tool("s")]},
    )
    assert check_input(wf, {"a": 1}) == {"a": 1, "b": 2}
    with pytest.raises(InvalidRequest, match="needs input a"):
        check_input(wf, {})


def test_retry_backoff_is_equal_jitter() -> None:
    policy = RetryPolicy(max_attempts=5, backoff=1.0, backoff_max=3.0)
    assert [policy.delay(n, 0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 1.5, 1.5]
    assert policy.delay(1, 1.0) == 1.0


# --------------------------------------------------------------------------- the scheduler


def _st(status: StepStatus, output: Any = None, **kw: Any) -> StepState:
    return StepState(status=status, output=output, **kw)


DIAMOND = _wf(
    [
        _tool("a"),
        _tool("b", needs="a"),
        _tool("c", needs="a"),
        {"id": "d", "join": {}, "needs": ["b", "c"]},
    ]
)


@pytest.mark.parametrize(
    ("states", "in_flight", "execute", "record", "finished"),
    [
        ({}, (), ["a"], [], False),
        ({"a": _st(R, attempt=1)}, ["a"], [], [], False),
        ({"a": _st(R, attempt=1)}, [], ["a"], [], False),  # interrupted: again
        ({"a": _st(C)}, [], ["b", "c"], [], False),
        ({"a": _st(C), "b": _st(C), "c": _st(R, attempt=1)}, ["c"], [], [], False),
        ({"a": _st(C), "b": _st(C, 1), "c": _st(C, 2)}, [], [], [("d", C)], False),
        ({"a": _st(C), "b": _st(C), "c": _st(C), "d": _st(C)}, [], [], [], True),
    ],
)
def test_diamond(
    states: dict[str, StepState],
    in_flight: list[str],
    execute: list[str],
    record: list[tuple[str, StepStatus]],
    finished: bool,
) -> None:
    plan = next_steps(DIAMOND, {}, states, now=0.0, in_flight=in_flight)
    assert [e.path for e in plan.execute] == execute
    assert [(r.path, r.status) for r in plan.record] == record
    assert plan.finished is finished
    if record:
        assert plan.record[0].output == {"b": 1, "c": 2}


def test_failure_fails_the_run_and_retry_waits() -> None:
    assert next_steps(DIAMOND, {}, {"a": _st(F, error="boom")}, now=0).failed == (
        "step a failed: boom"
    )
    waiting = next_steps(DIAMOND, {}, {"a": _st(T, attempt=1, wake_at=10.0)}, now=5.0)
    assert (waiting.execute, waiting.wake_at) == ([], 10.0)
    due = next_steps(DIAMOND, {}, {"a": _st(T, attempt=1, wake_at=10.0)}, now=10.0)
    assert [(e.path, e.attempt) for e in due.execute] == [("a", 2)]


BRANCHY = _wf(
    [
        {"id": "check", "branch": {"if": "input.vip", "then": ["fast"], "else": ["slow"]}},
        _tool("fast"),
        _tool("slow"),
        _tool("after_slow", needs="slow"),
        {"id": "end", "join": {}, "needs": ["fast", "after_slow"]},
    ],
    inputs=["vip"],
)


def test_branch_skips_the_other_side_and_join_collects() -> None:
    plan = next_steps(BRANCHY, {"vip": True}, {}, now=0)
    assert [(r.path, r.output) for r in plan.record] == [
        ("check", {"taken": "then", "value": True})
    ]
    states = {"check": _st(C, {"taken": "then", "value": True})}
    plan = next_steps(BRANCHY, {"vip": True}, states, now=0)
    assert [e.path for e in plan.execute] == ["fast"]
    assert [(r.path, r.status) for r in plan.record] == [("slow", S)]
    states |= {"fast": _st(C, "F"), "slow": _st(S)}
    plan = next_steps(BRANCHY, {"vip": True}, states, now=0)
    assert [(r.path, r.status) for r in plan.record] == [("after_slow", S)]
    states |= {"after_slow": _st(S)}
    plan = next_steps(BRANCHY, {"vip": True}, states, now=0)
    assert [(r.path, r.output) for r in plan.record] == [("end", {"fast": "F"})]


MAPPED = _wf(
    [
        {
            "id": "m",
            "map": {
                "over": "{{ input.items }}",
                "concurrency": 2,
                "step": {"tool": {"name": "t", "args": {"v": "{{ item }}", "i": "{{ index }}"}}},
            },
        }
    ],
    inputs=["items"],
)


def test_map_is_bounded_and_collects_in_order() -> None:
    items = {"items": ["x", "y", "z"]}
    plan = next_steps(MAPPED, items, {}, now=0)
    assert [(e.path, dict(e.params)) for e in plan.execute] == [
        ("m[0]", {"name": "t", "args": {"v": "x", "i": 0}}),
        ("m[1]", {"name": "t", "args": {"v": "y", "i": 1}}),
    ]
    running = {"m[0]": _st(R, attempt=1), "m[1]": _st(R, attempt=1)}
    assert next_steps(MAPPED, items, running, now=0, in_flight=["m[0]", "m[1]"]).execute == []
    one_done = {"m[0]": _st(C, "X"), "m[1]": _st(R, attempt=1)}
    plan = next_steps(MAPPED, items, one_done, now=0, in_flight=["m[1]"])
    assert [e.path for e in plan.execute] == ["m[2]"]
    done = {"m[0]": _st(C, "X"), "m[1]": _st(C, "Y"), "m[2]": _st(C, "Z")}
    assert [(r.path, r.output) for r in next_steps(MAPPED, items, done, now=0).record] == [
        ("m", ["X", "Y", "Z"])
    ]
    failed = {"m[0]": _st(F, error="no")}
    assert next_steps(MAPPED, items, failed, now=0).record[0].status is F


def test_approval_and_wait() -> None:
    wf = _wf([{"id": "ok", "approval": {"message": "sure?"}}, {"id": "w", "wait": {"seconds": 5}}])
    plan = next_steps(wf, {}, {}, now=100.0)
    assert [(r.path, r.status, r.output, r.wake_at) for r in plan.record] == [
        ("ok", W, {"message": "sure?"}, None),
        ("w", W, None, 105.0),
    ]
    states = {"ok": _st(W), "w": _st(W, wake_at=105.0)}
    plan = next_steps(wf, {}, states, now=101.0)
    assert (plan.record, plan.execute, plan.finished, plan.wake_at) == ([], [], False, 105.0)
    assert [r.path for r in next_steps(wf, {}, states, now=105.0).record] == ["w"]


# --------------------------------------------------------------------------- cron


def _at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("*/15 * * * *", _at(2026, 1, 5, 9, 7), _at(2026, 1, 5, 9, 15)),
        ("0 9 * * mon-fri", _at(2026, 1, 9, 10, 0), _at(2026, 1, 12, 9, 0)),  # fri -> mon
        ("30 2 1 * *", _at(2026, 1, 31, 0, 0), _at(2026, 2, 1, 2, 30)),
        ("0 0 29 2 *", _at(2026, 3, 1, 0, 0), _at(2028, 2, 29, 0, 0)),
        ("@hourly", _at(2026, 12, 31, 23, 59), _at(2027, 1, 1, 0, 0)),
        ("0 12 13 * 5", _at(2026, 1, 1, 0, 0), _at(2026, 1, 2, 12, 0)),  # 13th or friday
        ("* * * * *", _at(2026, 1, 1, 0, 0, 30), _at(2026, 1, 1, 0, 1)),
    ],
)
def test_cron_next(expr: str, after: datetime, expected: datetime) -> None:
    assert parse_cron(expr).next_after(after) == expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * *", "five fields"),
        ("61 * * * *", "minute"),
        ("* * * * funday", "day of week"),
        ("*/0 * * * *", "step"),
    ],
)
def test_cron_errors(expr: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_cron(expr)


def test_a_bare_branch_condition_depends_on_what_it_reads() -> None:
    wf = _wf(
        [
            _tool("x"),
            {"id": "b", "branch": {"if": "steps.x.output == 1", "then": ["y"]}},
            _tool("y"),
        ]
    )
    assert wf.deps["b"] == {"x"}
    assert next_steps(wf, {}, {}, now=0).record == []  # b waits for x
