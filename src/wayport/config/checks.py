"""Checks that span fields: references between models and deployments, fallback cycles, the
strength of the admin key and the safety of the bind address.

    >>> weak_key_reason("sk-1234")
    'is a well-known example value'
    >>> is_loopback("127.0.0.2"), is_loopback("0.0.0.0")
    (True, False)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping, Sequence

from wayport.config.issues import Issue, UnsafeBind
from wayport.config.schema import BUILTIN_BACKENDS, WayportConfig

KEY_ENV = "WAYPORT_API_KEY"
MIN_KEY_LENGTH = 32
GENERATE_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"

#: Keys that appear in documentation, tutorials and default configs (compared lower-cased).
KNOWN_KEYS = frozenset(
    {
        "sk-1234",
        "sk-12345",
        "sk-123456",
        "sk-1234567890",
        "sk-1234567890abcdef",
        "sk-1234567890abcdef1234567890abcdef",
        "sk-1234567890abcdefghijklmnopqrstuvwxyz",
        "sk-abcdef1234567890abcdef1234567890abcdef12",
        "sk-proj-1234567890abcdef",
        "sk-my-secret-key",
        "sk-litellm-master-key",
        "sk-master-key",
        "sk-admin",
        "sk-test",
        "sk-xxx",
        "sk-...",
        "admin",
        "secret",
        "password",
        "changeme",
        "token-abc123",
        "test",
        "apikey",
        "api-key",
        "api_key",
    }
)
#: Placeholder words: a key containing one was copied from an example, not generated.
PLACEHOLDERS = (
    "changeme",
    "change-me",
    "change_me",
    "replaceme",
    "replace-me",
    "replace_me",
    "your-api-key",
    "your_api_key",
    "yourapikey",
    "your-key",
    "your_key",
    "your-secret",
    "placeholder",
    "example",
    "password",
    "xxxxxxxx",
    "<",
)
_SEQUENCES = (
    "0123456789",
    "1234567890",
    "abcdefghijklmnopqrstuvwxyz",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
)
_RUN = 8  #: a run this long of one of the sequences marks a typed, not generated, key


def weak_key_reason(key: str) -> str | None:
    """Why ``key`` must not guard a server, or ``None`` when it may."""
    low = key.lower()
    if len(set(key)) == 1:
        return "is one character repeated"
    if low in KNOWN_KEYS or any(word in low for word in PLACEHOLDERS):
        return "is a well-known example value"
    if len(key) < MIN_KEY_LENGTH:
        return f"is too short ({len(key)} characters; at least {MIN_KEY_LENGTH} are needed)"
    for seq in _SEQUENCES:
        for run in (seq, seq[::-1]):
            if any(run[i : i + _RUN] in low for i in range(len(run) - _RUN + 1)):
                return "contains an easily guessed sequence"
    if len(set(key)) < 8:
        return "uses too few distinct characters"
    return None


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``; hostnames are never resolved."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def unsafe_bind_message(host: str) -> str:
    return (
        f"refusing to listen on {host!r} without an API key: that address is reachable from "
        "other machines. Either keep the default loopback bind (--host 127.0.0.1), or set an "
        f"admin key: export {KEY_ENV}=$({GENERATE_KEY}) (or server.api_key in wayport.yaml)"
    )


def check_bind(host: str, *, has_key: bool) -> None:
    """Raise :class:`UnsafeBind` for a non-loopback ``host`` without a key (CLI overrides)."""
    if not has_key and not is_loopback(host):
        raise UnsafeBind(unsafe_bind_message(host))


def key_issues(config: WayportConfig, env: Mapping[str, str]) -> list[Issue]:
    """The admin key from the file, else from ``WAYPORT_API_KEY``, must be strong."""
    if config.server.api_key is not None:
        reason = weak_key_reason(config.server.api_key.get_secret_value())
        path: tuple[str, ...] = ("server", "api_key")
        source = None
    else:
        reason = weak_key_reason(env[KEY_ENV]) if env.get(KEY_ENV) else None
        path, source = (), f"{KEY_ENV} (environment)"
    if reason is None:
        return []
    message = f"refused: the API key {reason}; generate a strong one with: {GENERATE_KEY}"
    return [Issue(path=path, message=message, source=source)]


def reference_issues(config: WayportConfig, *, backend_kinds: Collection[str]) -> list[Issue]:
    """Models name existing deployments and models; fallbacks form no cycle; every
    deployment's backend kind is registered."""
    issues: list[Issue] = []
    for name, deployment in config.deployments.items():
        if deployment.backend not in backend_kinds and deployment.backend not in BUILTIN_BACKENDS:
            expected = ", ".join(sorted({*BUILTIN_BACKENDS, *backend_kinds}))
            issues.append(
                Issue(
                    path=("deployments", name, "backend"),
                    message=f"unknown backend {deployment.backend!r} (expected one of: "
                    f"{expected}; plugins register more under 'wayport.backends')",
                )
            )
    if not config.models:
        issues.append(
            Issue(
                path=("models",),
                message="at least one model is needed, e.g. "
                "models: {smollm2: {deployments: [smollm2-local]}}",
            )
        )
    defined = ", ".join(config.deployments) or "none"
    for model, group in config.models.items():
        seen: set[str] = set()
        for i, ref in enumerate(group.deployments):
            where = ("models", model, "deployments", i)
            if ref.name not in config.deployments:
                issues.append(
                    Issue(
                        path=where,
                        message=f"deployment {ref.name!r} is not defined under deployments "
                        f"(defined: {defined})",
                    )
                )
            elif ref.name in seen:
                issues.append(Issue(path=where, message=f"deployment {ref.name!r} is listed twice"))
            seen.add(ref.name)
        for key in ("fallbacks", "context_window_fallbacks"):
            for i, target in enumerate(getattr(group, key)):
                where = ("models", model, key, i)
                if target == model:
                    issues.append(Issue(path=where, message="a model cannot fall back to itself"))
                elif target not in config.models:
                    issues.append(
                        Issue(path=where, message=f"model {target!r} is not defined under models")
                    )
    # Both kinds of fallback together must form no cycle: that bounds every request's plan.
    graph = {
        m: [
            (key, i, t)
            for key in ("fallbacks", "context_window_fallbacks")
            for i, t in enumerate(getattr(g, key))
            if t != m
        ]
        for m, g in config.models.items()
    }
    issues.extend(_cycles(graph))
    return issues


def _cycles(graph: Mapping[str, Sequence[tuple[str, int, str]]]) -> list[Issue]:
    """One issue per back edge found by depth-first search, at the edge that closes it."""
    issues: list[Issue] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    trail: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        trail.append(node)
        for key, i, nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                loop = " -> ".join([*trail[trail.index(nxt) :], nxt])
                issues.append(
                    Issue(path=("models", node, key, i), message=f"fallbacks form a cycle: {loop}")
                )
            elif nxt in graph and nxt not in state:
                visit(nxt)
        trail.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)
    return issues
