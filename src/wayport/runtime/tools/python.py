"""Python functions as tools. The JSON Schema comes from the type hints, the description from
the docstring's first line; sync functions run in a worker thread, async ones are awaited::

    def get_weather(city: str, unit: Literal["c", "f"] = "c") -> dict[str, float]:
        '''Current temperature in a city.'''

    tool = PythonTool.from_ref("myapp.tools:get_weather")
    tool.spec.parameters["required"]  # ["city"]
    await tool.call({"city": "Oslo"}, idempotency_key="call-1", timeout=10)

A string return value goes to the model as is; anything else is encoded as JSON (dataclasses,
lists, dicts …). An exception becomes ``ToolResult(is_error=True)`` carrying its message. A
function that declares an ``idempotency_key`` parameter receives the call's key (it is not part
of the schema the model sees).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union, get_args, get_origin

import msgspec

from wayport.core.agent import ToolResult, ToolSpec
from wayport.core.errors import ConfigError

__all__ = ["PythonTool", "json_schema", "load_ref"]

_KEY_PARAM = "idempotency_key"
_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def load_ref(ref: str) -> Callable[..., Any]:
    """Import ``"package.module:function"`` (attribute paths like ``mod:Class.method`` too)."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"tool reference {ref!r} must look like 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load tool {ref!r}: {exc}") from exc
    if not callable(target):
        raise ConfigError(f"tool {ref!r} is not callable")
    return typing.cast(Callable[..., Any], target)


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def json_schema(tp: Any) -> dict[str, Any]:
    """The JSON Schema of one Python annotation."""
    if tp is Any or tp is inspect.Parameter.empty or tp is object:
        return {}
    if tp is None or tp is type(None):
        return {"type": "null"}
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is typing.Annotated:
        schema = json_schema(args[0])
        notes = [a for a in args[1:] if isinstance(a, str)]
        return {**schema, "description": notes[0]} if notes else schema
    if origin is Literal:
        return {"enum": list(args)}
    if origin is Union or origin is types.UnionType:
        return {"anyOf": [json_schema(a) for a in args]}
    if origin in (list, set, frozenset, tuple) or tp in (list, set, frozenset, tuple):
        schema = {"type": "array"}
        if args and not (origin is tuple and (len(args) != 2 or args[1] is not Ellipsis)):
            return {**schema, "items": json_schema(args[0])}
        return schema
    if origin is not None and str(origin).startswith("<class 'collections.abc."):
        name = origin.__name__
        if name in ("Sequence", "Iterable", "Collection", "MutableSequence"):
            return {"type": "array", "items": json_schema(args[0])} if args else {"type": "array"}
        if name in ("Mapping", "MutableMapping"):
            return _mapping_schema(args)
    if origin is dict or tp is dict:
        return _mapping_schema(args)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if _is_typeddict(tp):
        hints = typing.get_type_hints(tp)
        return _object_schema(
            {k: json_schema(v) for k, v in hints.items()}, sorted(tp.__required_keys__)
        )
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = typing.get_type_hints(tp)
        fields = [f for f in dataclasses.fields(tp) if f.init]
        required = [
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        return _object_schema({f.name: json_schema(hints[f.name]) for f in fields}, required)
    raise ConfigError(f"cannot build a JSON Schema for the annotation {tp!r}")


def _mapping_schema(args: tuple[Any, ...]) -> dict[str, Any]:
    if len(args) == 2:
        return {"type": "object", "additionalProperties": json_schema(args[1])}
    return {"type": "object"}


def _object_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    return schema


def _convert(tp: Any, value: Any) -> Any:
    """Turn validated JSON into the dataclasses and enums the function declared."""
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return _convert(get_args(tp)[0], value)
    if origin is Union or origin is types.UnionType:
        for arg in get_args(tp):
            if arg is not type(None) and value is not None:
                return _convert(arg, value)
        return value
    if origin in (list, tuple, set, frozenset) and isinstance(value, list):
        args = get_args(tp)
        items = [_convert(args[0], v) for v in value] if args else value
        return items if origin is list else origin(items)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type) and isinstance(value, dict):
        hints = typing.get_type_hints(tp)
        return tp(**{k: _convert(hints[k], v) for k, v in value.items()})
    return value


def _encode(value: Any) -> str:
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


class PythonTool:
    """A Python callable behind the ``Tool`` protocol."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        side_effects: bool = True,
        requires_approval: bool = False,
    ) -> None:
        self._func = func
        self._is_async = inspect.iscoroutinefunction(func)
        try:
            hints = typing.get_type_hints(func, include_extras=True)
            signature = inspect.signature(func)
        except (NameError, TypeError, ValueError) as exc:
            raise ConfigError(f"cannot read the signature of tool {func!r}: {exc}") from exc
        self._hints: dict[str, Any] = {}
        properties: dict[str, Any] = {}
        required: list[str] = []
        self._wants_key = False
        for param in signature.parameters.values():
            if param.name == _KEY_PARAM:
                self._wants_key = True
                continue
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
                raise ConfigError(f"tool {func.__name__!r}: parameter {param.name!r} must be "
                                  "passable by keyword")  # fmt: skip
            annotation = hints.get(param.name, Any)
            self._hints[param.name] = annotation
            properties[param.name] = json_schema(annotation)
            if param.default is param.empty:
                required.append(param.name)
        doc = inspect.getdoc(func) or ""
        self.spec = ToolSpec(
            name=name or func.__name__,
            description=description if description is not None else doc.split("\n\n")[0].strip(),
            parameters=_object_schema(properties, required),
            side_effects=side_effects,
            requires_approval=requires_approval,
        )

    @classmethod
    def from_ref(
        cls,
        ref: str,
        *,
        name: str | None = None,
        description: str | None = None,
        side_effects: bool = True,
        requires_approval: bool = False,
    ) -> PythonTool:
        return cls(
            load_ref(ref),
            name=name,
            description=description,
            side_effects=side_effects,
            requires_approval=requires_approval,
        )

    async def call(
        self, arguments: Mapping[str, Any], *, idempotency_key: str, timeout: float | None
    ) -> ToolResult:
        kwargs = {k: _convert(self._hints.get(k, Any), v) for k, v in arguments.items()}
        if self._wants_key:
            kwargs[_KEY_PARAM] = idempotency_key
        try:
            async with asyncio.timeout(timeout):
                if self._is_async:
                    value = await self._func(**kwargs)
                else:
                    # A sync tool may block (files, requests); the loop must not.
                    value = await asyncio.to_thread(self._func, **kwargs)
            return ToolResult(content=_encode(value))
        except TimeoutError:
            return ToolResult(
                content=f"Tool {self.spec.name!r} timed out after {timeout}s", is_error=True
            )
        # The function is user code: whatever it raises is the model's to read, not a crash
        # of the run.
        except Exception as exc:  # noqa: BLE001
            return ToolResult(content=f"{type(exc).__name__}: {exc}", is_error=True)
