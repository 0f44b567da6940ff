"""The workflow template language: ``{{ expression }}`` inside strings, evaluated against plain
data, never with ``eval``.

    render("Hi {{ input.name }}", {"input": {"name": "Ada"}})          # -> "Hi Ada"
    render("{{ steps.lookup.output }}", ctx)                           # -> the output itself
    truthy(evaluate('steps.classify.output == "billing"', ctx))

A string that is exactly one ``{{ … }}`` keeps the value's type (a list stays a list); anywhere
else values are interpolated as text (containers as JSON). Expressions are dotted paths
(``steps.x.output.items.0``), string/number/``true``/``false``/``null`` literals, comparisons
(``== != < <= > >= in``) and ``not``/``and``/``or``. Paths only walk dict keys and list
indexes: there is no attribute access, call or import, so a template cannot reach Python.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from wayport.core.errors import InvalidRequest

__all__ = ["TemplateError", "evaluate", "references", "render", "truthy"]

_TAG = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_TOKEN = re.compile(
    r"""\s*(?:
    (?P<num>-?\d+(?:\.\d+)?)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>==|!=|<=|>=|<|>|\(|\))
  | (?P<path>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*)
)""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}
_MISSING = object()


class TemplateError(InvalidRequest):
    """A template that cannot be parsed, or a path that leads nowhere."""

    default_code = "template_error"


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # num, str, op, path, kw
    text: str


def _tokens(expr: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos, end = 0, len(expr.rstrip())
    while pos < end:
        m = _TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            raise TemplateError(f"cannot read {expr[pos:].strip()!r} in {{{{ {expr.strip()} }}}}")
        kind = m.lastgroup or ""
        text = m.group(kind)
        if kind == "path" and text in _KEYWORDS:
            kind = "kw"
        out.append(_Tok(kind, text))
        pos = m.end()
    return out


class _Parser:
    """Recursive descent over the tokens; builds nested tuples evaluated by ``_eval``."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.toks = _tokens(expr)
        self.i = 0

    def parse(self) -> tuple[Any, ...]:
        if not self.toks:
            raise TemplateError("an empty {{ }} expression")
        node = self._or()
        if self.i != len(self.toks):
            raise TemplateError(
                f"unexpected {self.toks[self.i].text!r} in {{{{ {self.expr.strip()} }}}}"
            )
        return node

    def _peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _take(self, text: str) -> bool:
        tok = self._peek()
        if tok is not None and tok.kind in ("kw", "op") and tok.text == text:
            self.i += 1
            return True
        return False

    def _or(self) -> tuple[Any, ...]:
        node = self._and()
        while self._take("or"):
            node = ("or", node, self._and())
        return node

    def _and(self) -> tuple[Any, ...]:
        node = self._not()
        while self._take("and"):
            node = ("and", node, self._not())
        return node

    def _not(self) -> tuple[Any, ...]:
        if self._take("not"):
            return ("not", self._not())
        return self._cmp()

    def _cmp(self) -> tuple[Any, ...]:
        left = self._atom()
        tok = self._peek()
        if tok is not None and tok.text in ("==", "!=", "<", "<=", ">", ">=", "in"):
            self.i += 1
            return ("cmp", tok.text, left, self._atom())
        return left

    def _atom(self) -> tuple[Any, ...]:
        tok = self._peek()
        if tok is None:
            raise TemplateError(f"{{{{ {self.expr.strip()} }}}} ends too early")
        self.i += 1
        if tok.kind == "op" and tok.text == "(":
            node = self._or()
            if not self._take(")"):
                raise TemplateError(f"missing ')' in {{{{ {self.expr.strip()} }}}}")
            return node
        if tok.kind == "num":
            return ("lit", float(tok.text) if "." in tok.text else int(tok.text))
        if tok.kind == "str":
            return ("lit", json.loads('"' + tok.text[1:-1].replace('"', '\\"') + '"'))
        if tok.kind == "kw" and tok.text in ("true", "false", "null"):
            return ("lit", {"true": True, "false": False, "null": None}[tok.text])
        if tok.kind == "path":
            return ("path", tuple(tok.text.split(".")))
        raise TemplateError(f"unexpected {tok.text!r} in {{{{ {self.expr.strip()} }}}}")


_CACHE: dict[str, tuple[Any, ...]] = {}


def _compiled(expr: str) -> tuple[Any, ...]:
    node = _CACHE.get(expr)
    if node is None:
        node = _Parser(expr).parse()
        if len(_CACHE) < 4096:
            _CACHE[expr] = node
    return node


def _walk(path: tuple[str, ...], ctx: Mapping[str, Any]) -> Any:
    value: Any = ctx
    for part in path:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif (
            isinstance(value, list)
            and part.lstrip("-").isdigit()
            and -len(value) <= int(part) < len(value)
        ):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _eval(node: tuple[Any, ...], ctx: Mapping[str, Any], strict: bool) -> Any:
    op = node[0]
    if op == "lit":
        return node[1]
    if op == "path":
        value = _walk(node[1], ctx)
        if value is _MISSING:
            if strict:
                raise TemplateError(f"{'.'.join(node[1])} is not defined", param="template")
            return None
        return value
    if op == "not":
        return not truthy(_eval(node[1], ctx, strict))
    if op == "and":
        return truthy(_eval(node[1], ctx, strict)) and truthy(_eval(node[2], ctx, strict))
    if op == "or":
        return truthy(_eval(node[1], ctx, strict)) or truthy(_eval(node[2], ctx, strict))
    left, right = _eval(node[2], ctx, strict), _eval(node[3], ctx, strict)
    try:
        match node[1]:
            case "==":
                return bool(left == right)
            case "!=":
                return bool(left != right)
            case "in":
                return left in right if isinstance(right, str | list | Mapping) else False
            case "<":
                return bool(left < right)
            case "<=":
                return bool(left <= right)
            case ">":
                return bool(left > right)
            case _:
                return bool(left >= right)
    except TypeError:
        return False


def truthy(value: Any) -> bool:
    """JSON truthiness: ``null``, ``false``, ``0``, ``""``, ``[]`` and ``{}`` are false; the
    strings ``"false"``/``"no"``/``"0"`` are false too (model answers often are text)."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "no", "0", "null", "none")
    return bool(value)


def evaluate(expr: str, ctx: Mapping[str, Any], *, strict: bool = True) -> Any:
    """The value of one expression (without the braces). ``strict``: a missing path raises
    ``TemplateError``; else it is ``null``."""
    return _eval(_compiled(expr), ctx, strict)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def render(template: Any, ctx: Mapping[str, Any], *, strict: bool = True) -> Any:
    """``template`` with every ``{{ … }}`` replaced; dicts and lists are rendered deeply,
    other values returned as they are."""
    if isinstance(template, str):
        if "{{" not in template:
            return template
        whole = _TAG.fullmatch(template.strip())
        if whole is not None and template.count("{{") == 1:
            return evaluate(whole.group(1), ctx, strict=strict)
        return _TAG.sub(lambda m: _text(evaluate(m.group(1), ctx, strict=strict)), template)
    if isinstance(template, Mapping):
        return {str(k): render(v, ctx, strict=strict) for k, v in template.items()}
    if isinstance(template, list | tuple):
        return [render(v, ctx, strict=strict) for v in template]
    return template


def _paths(node: tuple[Any, ...]) -> Iterator[tuple[str, ...]]:
    if node[0] == "path":
        yield node[1]
    elif node[0] != "lit":
        for child in node[1:]:
            if isinstance(child, tuple):
                yield from _paths(child)


def references(template: Any) -> Iterator[tuple[str, ...]]:
    """Every path the template reads (parsing it, so a broken template raises here)."""
    if isinstance(template, str):
        for m in _TAG.finditer(template):
            yield from _paths(_compiled(m.group(1)))
        if template.count("{{") != len(_TAG.findall(template)):
            raise TemplateError(f"unclosed {{{{ in {template!r}")
    elif isinstance(template, Mapping):
        for v in template.values():
            yield from references(v)
    elif isinstance(template, list | tuple):
        for v in template:
            yield from references(v)
