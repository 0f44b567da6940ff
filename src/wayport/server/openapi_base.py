"""The building blocks of the OpenAPI document's fragments.

Each area of the API describes its own routes in a ``server/openapi_<area>.py`` module with
``docs(ctx) -> {route name: RouteDoc}``, keyed by the ``Route.name`` the app mounts, and
``schemas() -> {name: JSON schema}``, the components its operations refer to. The
document is assembled by :func:`wayport.server.openapi.build_openapi` from the routes actually
mounted, so a route that is not served is not described. Security and the least role of each
operation come from the route table itself (``security``, ``x-wayport-role``), not from here.

    def docs(ctx: DocContext) -> dict[str, RouteDoc]:
        return {"/v1/usage": RouteDoc(paths={"/v1/usage": {"get": operation(
            "The usage ledger", {"200": response("Totals.", json_content("UsageReport"))})}})}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

REF = "#/components/schemas/{name}"
ERROR_STATUSES = {
    "400": "The request is malformed or names an invalid field (``error.param``).",
    "401": "Missing or invalid API key (or, on a platform webhook, signature).",
    "403": "Refused: the key's role or scopes do not allow this, or a target is not allowed.",
    "404": "Unknown model, agent, session, run, response or other named resource.",
    "405": "The path exists but does not take this method; see ``Allow``.",
    "409": "Conflict: the resource is busy, exists already, or is not in a state allowing it.",
    "413": "The body is larger than the server accepts.",
    "415": "The body is not declared as JSON.",
    "429": "Rate limited or over budget; see ``Retry-After``.",
    "500": "An unexpected server error.",
    "502": "The upstream model failed.",
    "503": "No deployment can serve the request now; see ``Retry-After``.",
    "504": "The upstream model timed out.",
}
#: the statuses any secured JSON route may answer with
READ_ERRORS = ("400", "401", "403", "404", "429", "500")
WRITE_ERRORS = ("400", "401", "403", "404", "409", "413", "415", "429", "500")

Operation = dict[str, Any]
#: an OpenAPI path -> method (lower case) -> operation
Paths = dict[str, dict[str, Operation]]


@dataclass(frozen=True, slots=True, kw_only=True)
class DocContext:
    """What the fragments may vary on."""

    model: str = "model"  #: a model name for examples
    metrics: bool = True  #: ``/metrics`` is served
    metrics_auth: bool = True  #: ``/metrics`` asks for the configured key


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteDoc:
    """The operations one mounted route serves. Its paths are also the route's sub-path
    table: the app answers a method a path does not list with 405 and that path's ``Allow``,
    and a path under the route's prefix matching none of them with 404."""

    paths: Paths

    def methods(self) -> set[str]:
        return {m.upper() for item in self.paths.values() for m in item}


Fragments = Callable[[DocContext], dict[str, RouteDoc]]


def ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(name=name)}


def json_content(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": ref(name)}}


def response(description: str, content: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "headers": {"x-request-id": {"$ref": "#/components/headers/RequestId"}},
    }
    if content is not None:
        answer["content"] = content
    return answer


def errors(*statuses: str) -> dict[str, Any]:
    return {s: response(ERROR_STATUSES[s], json_content("ErrorBody")) for s in statuses}


def operation(
    summary: str,
    responses: dict[str, Any],
    *,
    body: tuple[str, dict[str, Any]] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    description: str | None = None,
    security: list[dict[str, list[str]]] | None = None,
    request_body: dict[str, Any] | None = None,
    role: str | None = None,
) -> Operation:
    """``body``: a JSON body (schema name, example); ``request_body``: any other, verbatim.
    ``security`` and ``role``: only where the handler authenticates by itself (the app's
    secured routes get the route table's)."""
    op: Operation = {"summary": summary, "responses": responses}
    if role is not None:
        op["x-wayport-role"] = role
    if description is not None:
        op["description"] = description
    if security is not None:
        op["security"] = security
    if body is not None:
        name, example = body
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(name), "example": example}},
        }
    elif request_body is not None:
        op["requestBody"] = request_body
    if parameters:
        op["parameters"] = parameters
    return op


def path_param(
    name: str, description: str, *, pattern: str = "^[A-Za-z0-9_.:-]+$"
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": pattern},
    }


def query_param(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "schema": schema}
    if description:
        param["description"] = description
    return param


def header_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "description": description,
        "schema": {"type": "string", "maxLength": 200},
    }


def obj(properties: dict[str, Any], required: Iterable[str] = (), **extra: Any) -> dict[str, Any]:
    """A JSON object schema (further properties allowed: answers may grow fields)."""
    return {"type": "object", "required": list(required), "properties": properties, **extra}


def listing(item: str, **more: Any) -> dict[str, Any]:
    """``{"object": "list", "data": [item, …]}``."""
    props = {"object": {"const": "list"}, "data": {"type": "array", "items": ref(item)}, **more}
    return obj(props, ["object", "data"])


def struct_schemas(
    *structs: type[msgspec.Struct], rename: dict[str, str] | None = None
) -> dict[str, Any]:
    """The JSON schemas of request structs (validated with msgspec), optionally renamed where
    two areas use the same struct name."""
    _, found = msgspec.json.schema_components(structs, ref_template=REF)
    names = rename or {}
    out = {names.get(name, name): schema for name, schema in found.items()}
    if names:
        text = msgspec.json.encode(out).decode()
        for old, new in names.items():
            text = text.replace(f'"{REF.format(name=old)}"', f'"{REF.format(name=new)}"')
        decoded: dict[str, Any] = msgspec.json.decode(text)
        return decoded
    return out


STRING: dict[str, Any] = {"type": "string"}
NUMBER: dict[str, Any] = {"type": "number"}
INT: dict[str, Any] = {"type": "integer"}
BOOL: dict[str, Any] = {"type": "boolean"}
NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}
NULLABLE_NUMBER: dict[str, Any] = {"type": ["number", "null"]}
ANY: dict[str, Any] = {}
