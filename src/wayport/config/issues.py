"""Configuration problems, located: ``wayport.yaml:14: deployments.my-vllm.timeouts.connect:
Input should be a valid number (got 'fast')``.

An :class:`Issue` names a path into the document; a :class:`SourceMap` (built from PyYAML's
composed nodes) turns the path into a line. Paths that are absent from the file (a required
field left out) point at their nearest ancestor that is present.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Tag, ValidationError
from pydantic_core import ErrorDetails

from wayport.config.schema import DEPLOYMENT_TAGS, WayportConfig, backend_tag
from wayport.core.errors import ConfigError

DocPath = tuple[str | int, ...]
_SECRET_WORDS = ("key", "token", "secret", "password", "authorization")


@dataclass(frozen=True, slots=True, kw_only=True)
class Issue:
    path: DocPath = ()
    message: str
    line: int | None = None  #: set when known better than the path's line (a bad scalar)
    source: str | None = None  #: replaces file and path, e.g. ``"WAYPORT_API_KEY"``


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceMap:
    """Where each path of a document starts: the key's line for mapping entries, the item's
    line for sequence items (1-based)."""

    file: str | None = None
    lines: Mapping[DocPath, int] = field(default_factory=dict)

    def line(self, path: DocPath) -> int | None:
        for end in range(len(path), -1, -1):
            found = self.lines.get(_norm(path[:end]))
            if found is not None:
                return found
        return None

    def format(self, issue: Issue) -> str:
        if issue.source is not None:
            return f"{issue.source}: {issue.message}"
        where = self.file or ""
        line = issue.line if issue.line is not None else self.line(issue.path)
        if where and line is not None:
            where = f"{where}:{line}"
        parts = [p for p in (where, dotted(issue.path), issue.message) if p]
        return ": ".join(parts)


def _norm(path: DocPath) -> DocPath:
    return tuple(p if isinstance(p, int) else str(p) for p in path)


def dotted(path: DocPath) -> str:
    """``("models", "m", "deployments", 0)`` -> ``"models.m.deployments[0]"``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class InvalidConfig(ConfigError):
    """Configuration problems, one formatted line each (``problems``)."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


class UnsafeBind(ConfigError):
    """Refused to listen beyond loopback without an API key."""

    default_code = "unsafe_bind"


def raise_if_any(issues: Sequence[Issue], source: SourceMap) -> None:
    if issues:
        raise InvalidConfig([source.format(i) for i in issues])


def from_validation_error(exc: ValidationError, data: object) -> list[Issue]:
    """Turn pydantic's errors into issues whose paths follow the document."""
    return [_issue(err, data) for err in exc.errors(include_url=False)]


def _issue(err: ErrorDetails, data: object) -> Issue:
    loc: DocPath = tuple(err["loc"])
    # pydantic puts the union member's tag into the location: deployments.<name>.<tag>.field
    if len(loc) >= 3 and loc[0] == "deployments" and loc[2] in DEPLOYMENT_TAGS:
        loc = loc[:2] + loc[3:]
    kind = err["type"]
    if kind == "extra_forbidden":
        return Issue(path=loc, message=_unknown_field(loc, data))
    message = err["msg"]
    if kind in ("missing", "backend_missing"):
        return Issue(path=loc, message=message)
    return Issue(path=loc, message=f"{message} (got {_shown(err['input'], loc)})")


def _shown(value: object, loc: DocPath) -> str:
    if any(isinstance(p, str) and any(w in p.lower() for w in _SECRET_WORDS) for p in loc):
        return "a value that is not shown because it may be a secret"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_field(loc: DocPath, data: object) -> str:
    name = str(loc[-1]) if loc else "?"
    model = _model_at(loc[:-1], data)
    if model is None:
        return f"unknown field {name!r}"
    fields = list(model.model_fields)
    close = difflib.get_close_matches(name, fields, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "expected one of: " + ", ".join(fields)
    return f"unknown field {name!r} ({hint})"


def _model_at(path: DocPath, data: object) -> type[BaseModel] | None:
    """The schema model that validates the value at ``path`` of the raw document."""
    tp: Any = WayportConfig
    raw: object = data
    for part in path:
        tp = _unwrap(tp, raw)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            info = tp.model_fields.get(str(part))
            if info is None:
                return None
            tp = info.annotation
        elif get_origin(tp) in (dict, list):
            tp = get_args(tp)[-1]
        else:
            return None
        raw = _child(raw, part)
    tp = _unwrap(tp, raw)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _child(raw: object, part: str | int) -> object:
    if isinstance(raw, Mapping):
        return raw.get(part)
    if isinstance(raw, list) and isinstance(part, int) and 0 <= part < len(raw):
        return raw[part]
    return None


def _unwrap(tp: Any, raw: object) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [m for m in get_args(tp) if m is not type(None)]
            tag = backend_tag(raw)
            tagged = [m for m in members if any(_is_tag(a, tag) for a in _metadata(m))]
            tp = tagged[0] if tagged else members[0]
        else:
            return tp


def _metadata(tp: Any) -> tuple[Any, ...]:
    return get_args(tp)[1:] if get_origin(tp) is Annotated else ()


def _is_tag(meta: Any, tag: str | None) -> bool:
    return isinstance(meta, Tag) and meta.tag == tag
