"""The admin routes: API keys, tenants and the audit log of the caller's tenant.

    GET    /v1/admin/keys                  the tenant's keys (never their secrets)
    POST   /v1/admin/keys                  {"name", "role", "scopes", "user", "expires_in"}
                                           -> the key, with "key": the token, shown once
    DELETE /v1/admin/keys/{id}             revoke: refused from the next request on
    GET    /v1/admin/tenants               the tenants the caller may see
    POST   /v1/admin/tenants               {"id", "org", "name"} -> the tenant and an owner key
    GET    /v1/admin/audit?after=0&limit=100
    GET    /v1/admin/audit/export?format=jsonl|csv
    GET    /v1/admin/audit/verify          {"ok": true, "entries": n} unless tampered with

Every route needs the admin role (creating tenants: owner); ``app.py`` checks it before the
handler runs, and the services check the rest (a key creates keys of its own role or below).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qs

from msgspec import Meta, Struct

from wayport.core.errors import InvalidRequest
from wayport.core.identity import ApiKey, AuditEntry, Role, Tenant
from wayport.server.errors import RouteNotFound
from wayport.server.http import Exchange
from wayport.server.responses import encode
from wayport.server.wire import check, decode_object
from wayport.service.audit import ExportFormat, entry_dict
from wayport.service.keys import Security

KEYS_PATH = "/v1/admin/keys"
KEYS_PREFIX = KEYS_PATH + "/"
_MAX_PAGE = 1000
_EXPORT_TYPES = {"jsonl": b"application/x-ndjson", "csv": b"text/csv; charset=utf-8"}

Handler = Callable[[Exchange], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminRoute:
    name: str
    methods: tuple[str, ...]
    handler: Handler
    roles: Mapping[str, Role]
    prefix: str | None = None  #: matched by prefix (an id follows)


class KeyBody(Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(max_length=200)] = ""
    role: str = "user"
    scopes: Annotated[list[str], Meta(max_length=64)] = []
    user: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    expires_in: Annotated[float, Meta(gt=0)] | None = None  #: seconds from now
    expires_at: float | None = None  #: Unix time


class TenantBody(Struct, kw_only=True, forbid_unknown_fields=True):
    id: Annotated[str, Meta(min_length=1, max_length=64)]
    org: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    name: Annotated[str, Meta(max_length=200)] = ""


def key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "object": "api_key",
        "prefix": key.prefix,
        "tenant": key.tenant,
        "name": key.name,
        "role": key.role.label,
        "scopes": sorted(key.scopes),
        "user": key.user,
        "created_at": key.created_at,
        "created_by": key.created_by,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
        "last_used_at": key.last_used_at,
    }


def tenant_json(tenant: Tenant) -> dict[str, Any]:
    return {
        "id": tenant.id,
        "object": "tenant",
        "org": tenant.org,
        "name": tenant.name,
        "created_at": tenant.created_at,
    }


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {"object": "audit_entry", **entry_dict(entry)}


class AdminApi:
    def __init__(self, security: Security, *, max_body_bytes: int) -> None:
        self._s = security
        self._limit = max_body_bytes

    def table(self) -> list[AdminRoute]:
        admin = Role.ADMIN
        return [
            AdminRoute(
                name=KEYS_PATH,
                methods=("GET", "POST"),
                handler=self.keys,
                roles={"GET": admin, "POST": admin},
            ),
            AdminRoute(
                name=KEYS_PATH + "/{id}",
                methods=("DELETE",),
                handler=self.revoke_key,
                roles={"DELETE": admin},
                prefix=KEYS_PREFIX,
            ),
            AdminRoute(
                name="/v1/admin/tenants",
                methods=("GET", "POST"),
                handler=self.tenants,
                roles={"GET": admin, "POST": Role.OWNER},
            ),
            AdminRoute(
                name="/v1/admin/audit", methods=("GET",), handler=self.audit, roles={"GET": admin}
            ),
            AdminRoute(
                name="/v1/admin/audit/export",
                methods=("GET",),
                handler=self.export,
                roles={"GET": admin},
            ),
            AdminRoute(
                name="/v1/admin/audit/verify",
                methods=("GET",),
                handler=self.verify,
                roles={"GET": admin},
            ),
        ]

    async def keys(self, ex: Exchange) -> None:
        if ex.method == "GET":
            keys = await self._s.keys.list(ex.principal)
            await ex.respond(200, encode({"object": "list", "data": [key_json(k) for k in keys]}))
            return
        ex.require_json()
        body = check(decode_object(await ex.read_body(self._limit)), KeyBody)
        try:
            role = Role.parse(body.role)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="role") from exc
        expires_at = body.expires_at
        if body.expires_in is not None:
            if expires_at is not None:
                raise InvalidRequest("give expires_in or expires_at, not both", param="expires_in")
            expires_at = _now_plus(self._s, body.expires_in)
        key, token = await self._s.keys.create(
            ex.principal,
            name=body.name,
            role=role,
            scopes=body.scopes,
            user=body.user,
            expires_at=expires_at,
        )
        await ex.respond(201, encode({**key_json(key), "key": token}))

    async def revoke_key(self, ex: Exchange) -> None:
        key_id = ex.path[len(KEYS_PREFIX) :]
        if not key_id or "/" in key_id:
            raise RouteNotFound(f"No route {ex.method} {ex.path}")
        key = await self._s.keys.revoke(ex.principal, key_id)
        await ex.respond(200, encode(key_json(key)))

    async def tenants(self, ex: Exchange) -> None:
        if ex.method == "GET":
            found = await self._s.tenants.list(ex.principal)
            data = [tenant_json(t) for t in found]
            await ex.respond(200, encode({"object": "list", "data": data}))
            return
        ex.require_json()
        body = check(decode_object(await ex.read_body(self._limit)), TenantBody)
        tenant, key, token = await self._s.tenants.create(
            ex.principal, tenant_id=body.id, org=body.org, name=body.name
        )
        answer = {**tenant_json(tenant), "owner_key": {**key_json(key), "key": token}}
        await ex.respond(201, encode(answer))

    async def audit(self, ex: Exchange) -> None:
        query = _query(ex)
        after = _int(query, "after", 0, 0, 2**62)
        limit = _int(query, "limit", 100, 1, _MAX_PAGE)
        page = await self._s.audit.entries(ex.principal.tenant, after=after, limit=limit)
        data = [audit_json(e) for e in page]
        body = {"object": "list", "data": data, "has_more": len(page) == limit}
        await ex.respond(200, encode(body))

    async def export(self, ex: Exchange) -> None:
        asked = _query(ex).get("format", ["jsonl"])[-1]
        if asked not in _EXPORT_TYPES:
            raise InvalidRequest("format must be jsonl or csv", param="format")
        fmt: ExportFormat = "csv" if asked == "csv" else "jsonl"
        lines = [line async for line in self._s.audit.export(ex.principal.tenant, fmt=fmt)]
        await ex.respond(200, "".join(lines).encode(), content_type=_EXPORT_TYPES[fmt])

    async def verify(self, ex: Exchange) -> None:
        try:
            count = await self._s.audit.verify(ex.principal.tenant)
        except ValueError as exc:
            await ex.respond(200, encode({"ok": False, "error": str(exc)}))
            return
        await ex.respond(200, encode({"ok": True, "entries": count}))


def _now_plus(security: Security, seconds: float) -> float:
    return security.keys.now() + seconds


def _query(ex: Exchange) -> dict[str, list[str]]:
    return parse_qs(ex.scope.get("query_string", b"").decode("latin-1"))


def _int(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer", param=name) from None
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}", param=name)
    return value
