"""The workflow routes.

    GET  /v1/workflows                              the definitions
    POST /v1/workflows/{name}/runs                  {"input": {...}}  -> 202 the queued run
    GET  /v1/workflow-runs?workflow=&status=&limit= recent runs
    GET  /v1/workflow-runs/{id}                     the run and its steps
    POST /v1/workflow-runs/{id}/approve             {"approved": true, "step"?, "comment"?}
    POST /v1/workflow-runs/{id}/cancel
    POST /hooks/workflows/{name}                    inbound webhook, signed (no API key)

An ``Idempotency-Key`` header on ``POST …/runs`` makes a retried request return the first
run. Every route works in the caller's tenant (``ex.principal.tenant``).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs

from msgspec import Meta, Struct

from wayport.core.errors import InvalidRequest
from wayport.core.workflow_run import WorkflowStatus
from wayport.server.errors import MethodNotAllowed, RouteNotFound
from wayport.server.http import Exchange
from wayport.server.responses import encode
from wayport.server.wire import check, decode_object
from wayport.service.workflows import SIGNATURE_HEADER, WorkflowService

WORKFLOWS_PATH = "/v1/workflows"
WORKFLOWS_PREFIX = "/v1/workflows/"
RUNS_PATH = "/v1/workflow-runs"
RUNS_PREFIX = "/v1/workflow-runs/"
HOOKS_PREFIX = "/hooks/workflows/"
_MAX_LIST = 500


class StartBody(Struct, kw_only=True):
    input: dict[str, Any] | None = None


class ApproveBody(Struct, kw_only=True):
    approved: bool = True
    step: Annotated[str, Meta(min_length=1, max_length=100)] | None = None
    comment: Annotated[str, Meta(max_length=4000)] | None = None


class WorkflowsApi:
    def __init__(self, service: WorkflowService, *, max_body_bytes: int) -> None:
        self._service = service
        self._limit = max_body_bytes

    async def list_workflows(self, ex: Exchange) -> None:
        data = [
            {
                "id": spec.definition.name,
                "object": "workflow",
                "version": spec.definition.version,
                "description": spec.definition.description,
                "inputs": {
                    n: {"required": i.required, "default": i.default}
                    for n, i in spec.definition.inputs.items()
                },
                "steps": [{"id": s.id, "kind": s.kind.value} for s in spec.definition.steps],
                "cron": [c.expression for c in spec.cron],
                "webhook": spec.webhook_secret is not None,
            }
            for spec in self._service.catalog.list()
        ]
        await ex.respond(200, encode({"object": "list", "data": data}))

    async def workflow(self, ex: Exchange) -> None:
        """``POST /v1/workflows/{name}/runs``."""
        name, _, rest = ex.path[len(WORKFLOWS_PREFIX) :].partition("/")
        if not name or rest != "runs":
            raise RouteNotFound(f"No route {ex.method} {ex.path}")
        body = check(await self._json(ex), StartBody)
        run = await self._service.start_run(
            ex.principal.tenant,
            name,
            body.input or {},
            idempotency_key=_header(ex, b"idempotency-key"),
        )
        await ex.respond(202, encode(run.to_json()))

    async def list_runs(self, ex: Exchange) -> None:
        query = parse_qs(ex.scope.get("query_string", b"").decode("latin-1"))
        status_text = (query.get("status") or [None])[0]
        try:
            status = WorkflowStatus(status_text) if status_text else None
            limit = int((query.get("limit") or ["50"])[0])
        except ValueError as exc:
            raise InvalidRequest(f"bad query: {exc}", code="invalid_value") from exc
        if not 1 <= limit <= _MAX_LIST:
            raise InvalidRequest(f"limit must be 1 to {_MAX_LIST}", param="limit")
        runs = await self._service.runs(
            ex.principal.tenant,
            workflow=(query.get("workflow") or [None])[0],
            status=status,
            limit=limit,
        )
        await ex.respond(200, encode({"object": "list", "data": [r.to_json() for r in runs]}))

    async def runs(self, ex: Exchange) -> None:
        """``/v1/workflow-runs/{id}``, ``…/approve`` and ``…/cancel``."""
        run_id, _, rest = ex.path[len(RUNS_PREFIX) :].partition("/")
        if not run_id or rest not in ("", "approve", "cancel"):
            raise RouteNotFound(f"No route {ex.method} {ex.path}")
        tenant = ex.principal.tenant
        if rest == "":
            _allow(ex, "GET")
            run, steps = await self._service.progress(tenant, run_id)
            body = {**run.to_json(), "steps": [s.to_json() for s in steps]}
            await ex.respond(200, encode(body))
            return
        _allow(ex, "POST")
        if rest == "cancel":
            run = await self._service.cancel(tenant, run_id)
        else:
            approval = check(await self._json(ex), ApproveBody)
            run = await self._service.approve(
                tenant,
                run_id,
                approved=approval.approved,
                step=approval.step,
                comment=approval.comment,
                by=ex.principal.user or ex.principal.key_id,
            )
        await ex.respond(200, encode(run.to_json()))

    async def hook(self, ex: Exchange) -> None:
        """``POST /hooks/workflows/{name}``: authenticated by its HMAC signature alone."""
        name = ex.path[len(HOOKS_PREFIX) :]
        if not name or "/" in name:
            raise RouteNotFound(f"No route {ex.method} {ex.path}")
        spec = self._service.catalog.get(name)
        body = await ex.read_body(self._limit)
        run = await self._service.start_from_webhook(
            spec.tenant,
            name,
            body,
            signature=_header(ex, SIGNATURE_HEADER.encode()),
            delivery_id=_header(ex, b"x-wayport-delivery"),
        )
        await ex.respond(202, encode(run.to_json()))

    async def _json(self, ex: Exchange) -> dict[str, Any]:
        body = await ex.read_body(self._limit)
        if not body.strip():
            return {}
        ex.require_json()
        return decode_object(body)


def _allow(ex: Exchange, method: str) -> None:
    if ex.method != method:
        raise MethodNotAllowed(f"Method {ex.method} is not allowed", allow=method.encode())


def _header(ex: Exchange, name: bytes) -> str | None:
    for key, value in ex.scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1").strip()
            return text or None
    return None
