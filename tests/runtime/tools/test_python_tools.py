"""Python function tools: schema from type hints, sync in a thread, async awaited, results as
JSON text, exceptions as error results."""

from __future__ import annotations

import threading

import msgspec
import pytest
import sample_tools

from wayport.core.errors import ConfigError
from wayport.runtime.tools import PythonTool, json_schema, load_ref

pytestmark = pytest.mark.anyio


def test_schema_and_description_from_hints() -> None:
    tool = PythonTool.from_ref("sample_tools:add")
    assert tool.spec.name == "add"
    assert tool.spec.description == "Add two integers."
    assert tool.spec.parameters == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }


def test_schema_covers_every_supported_annotation() -> None:
    props = PythonTool(sample_tools.everything).spec.parameters["properties"]
    assert props["text"] == {"type": "string"}
    assert props["ratio"] == {"type": "number"}
    assert props["flag"] == {"type": "boolean"}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["scores"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert props["maybe"] == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert props["address"]["required"] == ["city", "zip"]
    assert props["point"]["required"] == ["x"]
    assert props["point"]["properties"]["y"] == {"type": "number"}
    assert props["note"] == {"type": "string", "description": "a short note"}
    greet = PythonTool(sample_tools.greet).spec.parameters["properties"]
    assert greet["style"] == {"enum": ["plain", "loud"]}
    assert json_schema(list[int] | None) == {
        "anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}]
    }


def test_key_parameter_is_hidden_from_the_model() -> None:
    spec = PythonTool(sample_tools.keyed).spec
    assert list(spec.parameters["properties"]) == ["item"]


async def test_sync_function_runs_in_a_worker_thread() -> None:
    result = await PythonTool(sample_tools.thread_name).call({}, idempotency_key="k", timeout=5)
    assert not result.is_error
    assert result.content != threading.current_thread().name


async def test_async_function_awaited_and_string_returned_as_is() -> None:
    result = await PythonTool(sample_tools.greet).call(
        {"name": "ada", "style": "loud"}, idempotency_key="k", timeout=5
    )
    assert (result.content, result.is_error) == ("HELLO ADA", False)


async def test_values_are_json_and_dataclasses_are_built() -> None:
    args = {
        "text": "t", "ratio": 0.5, "flag": True, "tags": [], "scores": {}, "maybe": None,
        "address": {"city": "Oslo", "zip": "0150"}, "point": {"x": 1.5},
    }  # fmt: skip
    result = await PythonTool(sample_tools.everything).call(args, idempotency_key="k", timeout=5)
    assert msgspec.json.decode(result.content) == {
        "point_type": "Point", "x": 1.5, "address": {"city": "Oslo", "zip": "0150"}, "maybe": None
    }  # fmt: skip


async def test_exception_becomes_an_error_result() -> None:
    result = await PythonTool(sample_tools.boom).call(
        {"reason": "no"}, idempotency_key="k", timeout=5
    )
    assert result.is_error
    assert result.content == "ValueError: cannot do that: no"


async def test_idempotency_key_passed_when_declared() -> None:
    result = await PythonTool(sample_tools.keyed).call(
        {"item": "a"}, idempotency_key="run-1:3", timeout=5
    )
    assert result.content == "a:run-1:3"


async def test_timeout_becomes_an_error_result() -> None:
    result = await PythonTool(sample_tools.blocked).call(
        {"release": "x"}, idempotency_key="k", timeout=0.05
    )
    assert result.is_error and "timed out" in result.content


@pytest.mark.parametrize(
    "ref", ["no_colon", "sample_tools:missing", "not_a_module_xyz:f", "sample_tools:Address.city"]
)
def test_bad_references_are_config_errors(ref: str) -> None:
    with pytest.raises(ConfigError):
        load_ref(ref)


def test_unsupported_annotation_is_a_config_error() -> None:
    def f(x: bytes) -> None: ...

    with pytest.raises(ConfigError, match="bytes"):
        PythonTool(f)
