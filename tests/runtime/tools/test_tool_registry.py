"""The registry: built from plain config data; parse, validate, call, bound in time; invalid
calls never executed."""

from __future__ import annotations

from typing import Any

import pytest

from wayport.core.agent import ToolResult, ToolSpec
from wayport.core.errors import ConfigError, NotFound
from wayport.runtime.tools import ArgumentValidator, ToolRegistry, parse_entry

pytestmark = pytest.mark.anyio


class Recorder:
    """A tool that records every execution (to prove invalid calls never run)."""

    def __init__(self) -> None:
        self.spec = ToolSpec(
            name="record",
            parameters={
                "type": "object",
                "properties": {"n": {"type": "integer", "minimum": 0}, "tag": {"type": "string"}},
                "required": ["n"],
                "additionalProperties": False,
            },
        )
        self.calls: list[tuple[dict[str, Any], str]] = []

    async def call(
        self, arguments: Any, *, idempotency_key: str, timeout: float | None
    ) -> ToolResult:
        self.calls.append((dict(arguments), idempotency_key))
        return ToolResult(content="recorded")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def registry(recorder: Recorder) -> ToolRegistry:
    return ToolRegistry([recorder])


async def test_valid_call_runs_with_key(registry: ToolRegistry, recorder: Recorder) -> None:
    result = await registry.execute("record", '{"n": 1}', idempotency_key="run:1", timeout=5)
    assert result == ToolResult(content="recorded")
    assert recorder.calls == [({"n": 1}, "run:1")]


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ('{"n": ', "not valid JSON"),
        ("not json at all", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('"n"', "expected a JSON object"),
        ("{}", "'n' is a required property"),
        ('{"n": "1"}', "at 'n': '1' is not of type 'integer'"),
        ('{"n": -1}', "at 'n': -1 is less than the minimum of 0"),
        ('{"n": 1, "extra": true}', "Additional properties are not allowed"),
        ('{"n": 1.5}', "is not of type 'integer'"),
        ("", "'n' is a required property"),
    ],
)
async def test_invalid_arguments_never_executed(
    registry: ToolRegistry, recorder: Recorder, arguments: str, fragment: str
) -> None:
    result = await registry.execute("record", arguments, idempotency_key="k", timeout=5)
    assert result.is_error
    assert fragment in result.content
    assert "call the tool again" in result.content
    assert recorder.calls == []


async def test_unknown_tool_is_an_error_result(registry: ToolRegistry) -> None:
    result = await registry.execute("nope", "{}", idempotency_key="k")
    assert (
        result.is_error and "Unknown tool 'nope'" in result.content and "record" in result.content
    )


def test_get_and_specs(registry: ToolRegistry, recorder: Recorder) -> None:
    assert registry.get("record") is recorder
    assert registry.specs(["record"]) == [recorder.spec]
    assert registry.specs() == [recorder.spec]
    with pytest.raises(NotFound):
        registry.specs(["record", "missing"])


def test_duplicate_names_and_bad_schema_are_config_errors(recorder: Recorder) -> None:
    with pytest.raises(ConfigError, match="two tools"):
        ToolRegistry([recorder, recorder])
    with pytest.raises(ConfigError, match="invalid JSON Schema"):
        ArgumentValidator("bad", {"type": "nonsense"})


async def test_from_plain_config_data() -> None:
    registry = ToolRegistry.from_specs(
        [
            {"type": "python", "function": "sample_tools:add"},
            {"type": "python", "function": "sample_tools:greet", "name": "hello"},
            {"function": "sample_tools:boom"},
        ]
    )
    await registry.start()
    try:
        assert registry.names() == ["add", "hello", "boom"]
        assert (await registry.execute("add", '{"a": 40}', idempotency_key="k")).content == "42"
        assert (await registry.execute("add", '{"a": "x"}', idempotency_key="k")).is_error
        failed = await registry.execute("boom", '{"reason": "r"}', idempotency_key="k")
        assert failed.is_error and "cannot do that" in failed.content
    finally:
        await registry.close()


async def test_timeout_is_an_error_result() -> None:
    registry = ToolRegistry.from_specs([{"function": "sample_tools:blocked"}])
    result = await registry.execute(
        "blocked", '{"release": "x"}', idempotency_key="k", timeout=0.05
    )
    assert result.is_error and "timed out" in result.content


@pytest.mark.parametrize(
    "data",
    [{"type": "grpc"}, {"type": "python"}, {"type": "http", "name": "x"}, {"function": 1, "x": 2}],
)
def test_bad_entries_are_config_errors(data: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        parse_entry(data)
