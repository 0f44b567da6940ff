"""The OpenAPI 3.1 document of every mounted route, generated from the same msgspec structs
that validate requests and encode responses, so document and server cannot drift apart.

Each area describes its own routes (``openapi_openai``, ``openapi_agents``, ``openapi_admin``,
``openapi_channels``, ``openapi_workflows``; see ``openapi_base``); this module merges the
fragments of the routes the app actually mounts, and takes security and the least role of
each operation from the route table itself.

    doc = build_openapi(version="0.1.0", models=["chat"], auth=True, metrics=True,
                        metrics_auth=True, routes=[r for r, _ in app.route_table()])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from wayport.core.identity import Role
from wayport.server import (
    openapi_admin,
    openapi_agents,
    openapi_channels,
    openapi_openai,
    openapi_releases,
    openapi_workflows,
)
from wayport.server.openapi_base import DocContext, Paths, RouteDoc

_AREAS = (
    openapi_openai,
    openapi_agents,
    openapi_admin,
    openapi_channels,
    openapi_workflows,
    openapi_releases,  # releases
)

#: Mounted routes left out of the document on purpose (route name prefix -> why). Anything
#: else mounted must be described (tests/server/test_ops.py checks both ways).
UNDOCUMENTED: Mapping[str, str] = {
    "/console": "the web console: HTML pages, static files, its sign-in form and the JSON its "
    "own pages poll, authenticated by its cookie; not an API for other clients",
}


class MountedRoute(Protocol):
    """What the document needs of a mounted route (``wayport.server.app.Route``)."""

    @property
    def name(self) -> str: ...

    @property
    def methods(self) -> frozenset[str]: ...

    @property
    def secured(self) -> bool: ...

    @property
    def roles(self) -> Mapping[str, Role]: ...

    @property
    def includes(self) -> tuple[str, ...]: ...


def undocumented(name: str) -> bool:
    return any(name == p or name.startswith(p + "/") for p in UNDOCUMENTED)


def route_docs(ctx: DocContext) -> dict[str, RouteDoc]:
    """Every area's fragments, by route name."""
    found: dict[str, RouteDoc] = {}
    for area in _AREAS:
        for name, doc in area.docs(ctx).items():
            if name in found:
                raise ValueError(f"two OpenAPI fragments for route {name}")
            found[name] = doc
    return found


def served_paths(route: MountedRoute, fragments: Mapping[str, RouteDoc]) -> Paths | None:
    """The operations ``route`` serves: its fragment's and those of the routes reached
    through it (``includes``), each method one the route mounts. ``None``: not described."""
    doc = fragments.get(route.name)
    if doc is None:
        return None
    served: Paths = {}
    for name in (route.name, *route.includes):
        inner = fragments.get(name)
        for path, item in (inner.paths if inner is not None else {}).items():
            ops = {m: op for m, op in item.items() if m.upper() in route.methods}
            if ops:
                served.setdefault(path, {}).update(ops)
    return served


def _schemas() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for area in _AREAS:
        for name, schema in area.schemas().items():
            if merged.get(name, schema) != schema:
                raise ValueError(f"two OpenAPI schemas named {name}")
            merged[name] = schema
    return merged


def _secure(op: dict[str, Any], route: MountedRoute, method: str, auth: bool) -> dict[str, Any]:
    done = dict(op)
    if route.secured:
        role = route.roles.get(method, Role.OWNER).label
        done["x-wayport-role"] = role
        done["security"] = [{"bearer": []}] if auth else []
        note = f"Least role: ``{role}``."
        done["description"] = f"{op['description']}\n\n{note}" if "description" in op else note
    elif not auth or "security" not in op:
        done["security"] = []  # the handler checks a signature, or nothing is asked
    return done


def build_openapi(
    *,
    version: str,
    models: Sequence[str],
    auth: bool,
    metrics: bool,
    metrics_auth: bool,
    routes: Iterable[MountedRoute],
) -> dict[str, Any]:
    """``auth``: whether an API key is configured; ``metrics``: whether ``/metrics`` is served;
    ``metrics_auth``: whether it asks for the key; ``routes``: the mounted routes."""
    ctx = DocContext(
        model=models[0] if models else "model", metrics=metrics, metrics_auth=metrics_auth
    )
    fragments = route_docs(ctx)
    paths: dict[str, Any] = {}
    for route in routes:
        served = served_paths(route, fragments)
        if served is None:
            continue  # left out on purpose (``UNDOCUMENTED``), or a test fails
        for path, item in served.items():
            for method, op in item.items():
                paths.setdefault(path, {})[method] = _secure(op, route, method.upper(), auth)
    components: dict[str, Any] = {
        "schemas": _schemas(),
        "headers": {
            "RequestId": {
                "description": "The client's ``x-request-id`` when sane, else a generated one.",
                "required": True,
                "schema": {"type": "string"},
            }
        },
    }
    if auth:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Wayport",
            "version": version,
            "description": "An OpenAI-compatible gateway and agent runtime: chat completions, "
            "embeddings, models, responses, agents with durable sessions and runs, and, when "
            "configured, admin, usage, privacy, channel, workflow and release routes. "
            "``x-wayport-role`` names the least role an operation needs.",
        },
        "paths": paths,
        "components": components,
    }
