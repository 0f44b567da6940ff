"""``${VAR}`` substitution in configuration values.

    >>> substitute("Bearer ${TOKEN}", {"TOKEN": "abc"})
    'Bearer abc'
    >>> substitute("${PORT:-8080}", {})
    '8080'
    >>> substitute("$${NOT_A_VAR}", {})
    '${NOT_A_VAR}'

``${VAR:-default}`` uses the default when ``VAR`` is unset or empty, as the shell does. An unset
``${VAR}`` without a default raises :class:`UnsetVariable`: a missing secret must stop the
start, not turn silently into an empty string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_TOKEN = re.compile(
    r"\$\$\{"  # escaped: a literal "${"
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<sep>:-(?P<default>[^}]*))?\}"
    r"|(?P<bad>\$\{[^}]*\}?)"
)


class SubstitutionError(ValueError):
    """A ``${…}`` expression could not be expanded."""


class UnsetVariable(SubstitutionError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"environment variable {name} is not set (used as ${{{name}}}); set it, or give a "
            f"default with ${{{name}:-default}}"
        )
        self.name = name


def has_expression(text: str) -> bool:
    """True when ``text`` holds anything :func:`substitute` would change."""
    return "${" in text


def substitute(text: str, env: Mapping[str, str]) -> str:
    """Expand every ``${VAR}``, ``${VAR:-default}`` and ``$${`` in ``text`` from ``env``."""
    if "${" not in text:
        return text

    def expand(match: re.Match[str]) -> str:
        if match.group("bad") is not None:
            raise SubstitutionError(
                f"invalid substitution {match.group('bad')!r}: expected ${{NAME}} or "
                "${NAME:-default} (write $${ for a literal ${)"
            )
        name = match.group("name")
        if name is None:
            return "${"
        value = env.get(name)
        if match.group("sep") is not None:
            return value if value else match.group("default")
        if value is None:
            raise UnsetVariable(name)
        return value

    return _TOKEN.sub(expand, text)
