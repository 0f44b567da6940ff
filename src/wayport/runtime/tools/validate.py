"""Arguments are checked against the tool's JSON Schema before anything runs. A model that
sends broken JSON or wrong types gets a message it can act on, never an execution::

    >>> v = ArgumentValidator("add", {"type": "object", "properties": {"a": {"type": "integer"}},
    ...                               "required": ["a"]})
    >>> v.check('{"a": 1}')
    {'a': 1}
    >>> bad = v.check('{"a": "one"}')
    >>> bad.is_error, "'one' is not of type 'integer'" in bad.content
    (True, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from wayport.core.agent import ToolResult
from wayport.core.errors import ConfigError

__all__ = ["ArgumentValidator"]

_MAX_ERRORS = 5
_MAX_VALUE = 80


def _where(path: Any) -> str:
    parts = [str(p) for p in path]
    return "/".join(parts) if parts else "(root)"


class ArgumentValidator:
    """The compiled Draft 2020-12 validator of one tool's ``parameters`` schema, built once."""

    __slots__ = ("_name", "_validator")

    def __init__(self, tool_name: str, schema: Mapping[str, Any]) -> None:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ConfigError(
                f"tool {tool_name!r} has an invalid JSON Schema: {exc.message}"
            ) from exc
        self._name = tool_name
        self._validator = Draft202012Validator(dict(schema))

    def _invalid(self, detail: str) -> ToolResult:
        return ToolResult(
            content=f"Invalid arguments for tool {self._name!r}: {detail}. "
            "Fix the arguments and call the tool again.",
            is_error=True,
        )

    def check(self, arguments_json: str) -> dict[str, Any] | ToolResult:
        """The parsed arguments, or an error result for the model. An empty string means no
        arguments, as several models send it for tools without parameters."""
        if not arguments_json.strip():
            arguments: Any = {}
        else:
            try:
                arguments = msgspec.json.decode(arguments_json)
            except msgspec.DecodeError as exc:
                return self._invalid(f"not valid JSON ({exc})")
        if not isinstance(arguments, dict):
            return self._invalid(f"expected a JSON object, got {type(arguments).__name__}")
        errors = sorted(self._validator.iter_errors(arguments), key=lambda e: list(e.path))
        if not errors:
            return arguments
        details = []
        for error in errors[:_MAX_ERRORS]:
            message = error.message
            if len(message) > _MAX_VALUE * 2:
                message = message[: _MAX_VALUE * 2] + "…"
            details.append(f"at '{_where(error.absolute_path)}': {message}")
        more = f" (and {len(errors) - _MAX_ERRORS} more)" if len(errors) > _MAX_ERRORS else ""
        return self._invalid("; ".join(details) + more)
