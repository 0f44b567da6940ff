"""The sub-paths a prefix route serves, each with its own methods, so that the app answers an
unsupported method with the sub-path's ``Allow`` and an unknown sub-path with 404 before any
handler runs.

The templates are the OpenAPI paths the route's fragment documents (``server/openapi*.py``):
the document and the dispatch share one source of truth.

    table = SubPaths.of({"/v1/runs/{id}": {"GET"}, "/v1/runs/{id}/cancel": {"POST"}})
    table.allow("/v1/runs/run-1/cancel")   # -> (frozenset({"POST"}), b"POST")
    table.allow("/v1/runs/run-1/nope")     # -> None: no such sub-path

A ``{param}`` matches one non-empty path segment; when a route has a single template ending
in a parameter, that parameter takes the rest of the path (a model named ``org/model``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: a template split at ``/``: a literal segment, or ``None`` for a ``{param}``
_Segments = tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class _Template:
    segments: _Segments
    methods: frozenset[str]
    allow: bytes
    greedy: bool  #: the last parameter takes the rest of the path

    def matches(self, parts: list[str]) -> bool:
        segments = self.segments
        if len(parts) != len(segments) and not (self.greedy and len(parts) > len(segments)):
            return False
        for want, got in zip(segments, parts, strict=False):
            if want is None:
                if not got:
                    return False
            elif want != got:
                return False
        return True


@dataclass(frozen=True, slots=True)
class SubPaths:
    templates: tuple[_Template, ...]

    @classmethod
    def of(cls, paths: Mapping[str, Iterable[str]]) -> SubPaths:
        """``paths``: template -> the methods it takes (templates taking none are left out)."""
        served = {path: frozenset(m.upper() for m in methods) for path, methods in paths.items()}
        served = {path: methods for path, methods in served.items() if methods}
        alone = len(served) == 1
        templates = []
        for path, methods in served.items():
            segments = tuple(_segment(s) for s in path.split("/"))
            templates.append(
                _Template(
                    segments=segments,
                    methods=methods,
                    allow=", ".join(sorted(methods)).encode(),
                    greedy=alone and segments[-1] is None,
                )
            )
        return cls(tuple(templates))

    def allow(self, path: str) -> tuple[frozenset[str], bytes] | None:
        """The methods ``path`` takes and its ``Allow`` value; ``None`` if no template fits."""
        parts = path.split("/")
        for template in self.templates:
            if template.matches(parts):
                return template.methods, template.allow
        return None


def _segment(text: str) -> str | None:
    return None if text.startswith("{") and text.endswith("}") else text
