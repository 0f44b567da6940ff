"""The OpenAPI fragments of the admin routes (keys, tenants, audit: ``admin_api``), the privacy
routes (``privacy_api``) and the usage ledger (``usage_api``)."""

from __future__ import annotations

from typing import Any

from wayport.core.usage import GROUPS
from wayport.server import admin_api
from wayport.server.openapi_base import (
    BOOL,
    INT,
    NULLABLE_NUMBER,
    NULLABLE_STRING,
    NUMBER,
    READ_ERRORS,
    STRING,
    WRITE_ERRORS,
    DocContext,
    RouteDoc,
    errors,
    json_content,
    listing,
    obj,
    operation,
    path_param,
    query_param,
    ref,
    response,
    struct_schemas,
)

_KEY = obj(
    {
        "id": STRING,
        "object": {"const": "api_key"},
        "prefix": STRING,
        "tenant": STRING,
        "name": STRING,
        "role": STRING,
        "scopes": {"type": "array", "items": STRING},
        "user": NULLABLE_STRING,
        "created_at": NUMBER,
        "created_by": NULLABLE_STRING,
        "expires_at": NULLABLE_NUMBER,
        "revoked_at": NULLABLE_NUMBER,
        "last_used_at": NULLABLE_NUMBER,
    },
    ["id", "object", "prefix", "tenant", "role", "scopes", "created_at"],
)
_TENANT = obj(
    {
        "id": STRING,
        "object": {"const": "tenant"},
        "org": STRING,
        "name": STRING,
        "created_at": NUMBER,
    },
    ["id", "object", "org", "created_at"],
)
_TOTAL = obj(
    {
        "group": STRING,
        "requests": INT,
        "runs": INT,
        "prompt_tokens": INT,
        "completion_tokens": INT,
        "total_tokens": INT,
        "cost": NUMBER,
        "latency_ms": NUMBER,
    },
    ["group", "requests", "runs", "prompt_tokens", "completion_tokens", "total_tokens", "cost"],
)
_SUBJECT = obj({"user": NULLABLE_STRING, "session": NULLABLE_STRING}, ["user", "session"])

SCHEMAS: dict[str, Any] = {
    "ApiKey": _KEY,
    "ApiKeyCreated": {
        "allOf": [
            ref("ApiKey"),
            obj({"key": {"type": "string", "description": "The token, shown once."}}, ["key"]),
        ]
    },
    "ApiKeyList": listing("ApiKey"),
    "Tenant": _TENANT,
    "TenantCreated": {
        "allOf": [ref("Tenant"), obj({"owner_key": ref("ApiKeyCreated")}, ["owner_key"])]
    },
    "TenantList": listing("Tenant"),
    "AuditEntry": obj(
        {
            "object": {"const": "audit_entry"},
            "tenant": STRING,
            "seq": INT,
            "at": NUMBER,
            "actor": STRING,
            "action": STRING,
            "target": NULLABLE_STRING,
            "details": {"type": "object"},
            "prev_hash": STRING,
            "hash": STRING,
        },
        ["object", "tenant", "seq", "at", "actor", "action", "hash"],
    ),
    "AuditList": listing("AuditEntry", has_more=BOOL),
    "AuditVerification": obj(
        {"ok": BOOL, "entries": INT, "error": STRING},
        ["ok"],
        description='``{"ok": true, "entries": n}``, or ``{"ok": false, "error": …}`` when '
        "an entry was altered or removed.",
    ),
    "UsageTotal": _TOTAL,
    "UsageReport": obj(
        {
            "object": {"const": "usage"},
            "tenant": STRING,
            "group_by": {"enum": list(GROUPS)},
            "since": NULLABLE_NUMBER,
            "until": NULLABLE_NUMBER,
            "data": {"type": "array", "items": ref("UsageTotal")},
            "total": ref("UsageTotal"),
        },
        ["object", "tenant", "group_by", "data", "total"],
    ),
    "PrivacyExport": obj(
        {
            "subject": _SUBJECT,
            "sessions": {"type": "array", "items": {"type": "object"}},
            "runs": {"type": "array", "items": {"type": "object"}},
            "usage": {"type": "array", "items": {"type": "object"}},
        },
        ["subject"],
        description="Everything stored about the subject: sessions with their messages, runs, "
        "usage records.",
    ),
    "PrivacyErased": obj(
        {"deleted": obj({"sessions": INT, "usage_rows": INT}, ["sessions", "usage_rows"])},
        ["deleted"],
    ),
}


def schemas() -> dict[str, Any]:
    return {**struct_schemas(admin_api.KeyBody, admin_api.TenantBody), **SCHEMAS}


_PAGE = [
    query_param("after", {"type": "integer", "minimum": 0, "maximum": 2**62}, "After this seq."),
    query_param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
]
_TIME = {
    "anyOf": [{"type": "number"}, {"type": "string", "format": "date-time"}, {"type": "string"}]
}
_SUBJECT_PARAMS = [
    query_param(
        "user",
        {"type": "string", "minLength": 1, "maxLength": 200},
        "A user (``metadata.user`` of sessions); give exactly one of user or session.",
    ),
    query_param("session", {"type": "string", "minLength": 1, "maxLength": 200}, "A session id."),
]


def _one(path: str, method: str, op: dict[str, Any]) -> RouteDoc:
    return RouteDoc(paths={path: {method: op}})


def docs(ctx: DocContext) -> dict[str, RouteDoc]:
    del ctx
    keys = admin_api.KEYS_PATH
    return {
        keys: RouteDoc(
            paths={
                keys: {
                    "get": operation(
                        "The tenant's API keys (never their secrets)",
                        {
                            "200": response("The keys.", json_content("ApiKeyList")),
                            **errors(*READ_ERRORS),
                        },
                    ),
                    "post": operation(
                        "Create an API key of the caller's role or below",
                        {
                            "201": response(
                                "The key, with its token (shown once).",
                                json_content("ApiKeyCreated"),
                            ),
                            **errors(*WRITE_ERRORS),
                        },
                        body=("KeyBody", {"name": "ci", "role": "deployer"}),
                        description="``role``: viewer, user, developer, deployer, admin or "
                        "owner; ``scopes`` limit the key to ``/v1/<scope>/…`` routes; "
                        "``expires_in`` (seconds) or ``expires_at`` (Unix time).",
                    ),
                }
            }
        ),
        keys + "/{id}": _one(
            keys + "/{id}",
            "delete",
            operation(
                "Revoke an API key: refused from the next request on",
                {
                    "200": response("The revoked key.", json_content("ApiKey")),
                    **errors(*READ_ERRORS),
                },
                parameters=[path_param("id", "The key id.")],
            ),
        ),
        "/v1/admin/tenants": RouteDoc(
            paths={
                "/v1/admin/tenants": {
                    "get": operation(
                        "The tenants the caller may see (its organisation's)",
                        {
                            "200": response("The tenants.", json_content("TenantList")),
                            **errors(*READ_ERRORS),
                        },
                    ),
                    "post": operation(
                        "Create a tenant (a project in an organisation) and its owner key",
                        {
                            "201": response(
                                "The tenant and its first owner key.",
                                json_content("TenantCreated"),
                            ),
                            **errors(*WRITE_ERRORS),
                        },
                        body=("TenantBody", {"id": "acme-support", "name": "Support"}),
                    ),
                }
            }
        ),
        "/v1/admin/audit": _one(
            "/v1/admin/audit",
            "get",
            operation(
                "A page of the tenant's audit log, oldest first",
                {"200": response("Entries.", json_content("AuditList")), **errors(*READ_ERRORS)},
                parameters=_PAGE,
            ),
        ),
        "/v1/admin/audit/export": _one(
            "/v1/admin/audit/export",
            "get",
            operation(
                "The whole audit log as JSON lines or CSV",
                {
                    "200": response(
                        "The entries.",
                        {
                            "application/x-ndjson": {"schema": STRING},
                            "text/csv": {"schema": STRING},
                        },
                    ),
                    **errors(*READ_ERRORS),
                },
                parameters=[query_param("format", {"enum": ["jsonl", "csv"]})],
            ),
        ),
        "/v1/admin/audit/verify": _one(
            "/v1/admin/audit/verify",
            "get",
            operation(
                "Check the audit log's hash chain",
                {
                    "200": response("The verdict.", json_content("AuditVerification")),
                    **errors(*READ_ERRORS),
                },
            ),
        ),
        "/v1/privacy/export": _one(
            "/v1/privacy/export",
            "get",
            operation(
                "Export everything stored about a user or a session",
                {
                    "200": response("The data.", json_content("PrivacyExport")),
                    **errors(*READ_ERRORS),
                },
                parameters=_SUBJECT_PARAMS,
            ),
        ),
        "/v1/privacy/data": _one(
            "/v1/privacy/data",
            "delete",
            operation(
                "Erase a user's or a session's sessions, messages, runs and usage records",
                {
                    "200": response("What was deleted.", json_content("PrivacyErased")),
                    **errors(*READ_ERRORS),
                },
                parameters=_SUBJECT_PARAMS,
            ),
        ),
        "/v1/usage": _one(
            "/v1/usage",
            "get",
            operation(
                "The tenant's usage: requests, runs, tokens, cost and latency, grouped",
                {"200": response("Totals.", json_content("UsageReport")), **errors(*READ_ERRORS)},
                parameters=[
                    query_param("group_by", {"enum": list(GROUPS)}),
                    query_param("since", _TIME, "Epoch seconds or an ISO 8601 date or time."),
                    query_param("until", _TIME, "Epoch seconds or an ISO 8601 date or time."),
                ],
            ),
        ),
    }
