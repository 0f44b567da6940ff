"""The OpenAPI fragments of the workflow routes (``workflows_api``): definitions, runs,
approvals and the signed inbound webhook."""

from __future__ import annotations

from typing import Any

from wayport.core.workflow_run import WorkflowStatus
from wayport.server import workflows_api
from wayport.server.openapi_base import (
    ANY,
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
    header_param,
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
from wayport.service.workflows import SIGNATURE_HEADER

_RUN = obj(
    {
        "id": STRING,
        "object": {"const": "workflow.run"},
        "workflow": STRING,
        "version": STRING,
        "status": {"enum": [s.value for s in WorkflowStatus]},
        "input": ANY,
        "output": ANY,
        "error": NULLABLE_STRING,
        "trigger": ANY,
        "parent_run_id": NULLABLE_STRING,
        "wake_at": NULLABLE_NUMBER,
        "attempt": INT,
        "created_at": NUMBER,
        "updated_at": NUMBER,
        "steps": {
            "type": "array",
            "description": "GET of one run only: its steps (map items as ``id[i]``).",
            "items": obj(
                {"path": STRING, "step": STRING, "kind": STRING, "status": STRING},
                ["path", "step", "kind", "status"],
            ),
        },
    },
    ["id", "object", "workflow", "status", "created_at", "updated_at"],
)
SCHEMAS: dict[str, Any] = {
    "Workflow": obj(
        {
            "id": STRING,
            "object": {"const": "workflow"},
            "version": STRING,
            "description": STRING,
            "inputs": {"type": "object"},
            "steps": {"type": "array", "items": {"type": "object"}},
            "cron": {"type": "array", "items": STRING},
            "webhook": BOOL,
        },
        ["id", "object", "version", "steps"],
    ),
    "WorkflowList": listing("Workflow"),
    "WorkflowRun": _RUN,
    "WorkflowRunList": listing("WorkflowRun"),
}


def schemas() -> dict[str, Any]:
    return {
        **struct_schemas(
            workflows_api.StartBody,
            workflows_api.ApproveBody,
            rename={"StartBody": "WorkflowStartBody", "ApproveBody": "WorkflowApproveBody"},
        ),
        **SCHEMAS,
    }


def _optional_json(name: str, example: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": False,
        "description": "Optional: an empty body is the same as ``{}``.",
        "content": {"application/json": {"schema": ref(name), "example": example}},
    }


def docs(ctx: DocContext) -> dict[str, RouteDoc]:
    del ctx
    return _workflows()


def _workflows() -> dict[str, RouteDoc]:
    run = [path_param("id", "The workflow run id.")]
    run_answer = {"200": response("The run.", json_content("WorkflowRun"))}
    return {
        workflows_api.WORKFLOWS_PATH: RouteDoc(
            paths={
                "/v1/workflows": {
                    "get": operation(
                        "The workflow definitions",
                        {
                            "200": response("The workflows.", json_content("WorkflowList")),
                            **errors("401", "403", "500"),
                        },
                    )
                }
            }
        ),
        "/v1/workflows/{name}/runs": RouteDoc(
            paths={
                "/v1/workflows/{name}/runs": {
                    "post": operation(
                        "Start a workflow run",
                        {
                            "202": response("The queued run.", json_content("WorkflowRun")),
                            **errors(*WRITE_ERRORS),
                        },
                        request_body=_optional_json(
                            "WorkflowStartBody", {"input": {"name": "Ada"}}
                        ),
                        parameters=[
                            path_param("name", "The workflow's name."),
                            header_param(
                                "Idempotency-Key", "A retried request returns the first run."
                            ),
                        ],
                    )
                }
            }
        ),
        workflows_api.RUNS_PATH: RouteDoc(
            paths={
                "/v1/workflow-runs": {
                    "get": operation(
                        "Recent workflow runs, newest first",
                        {
                            "200": response("The runs.", json_content("WorkflowRunList")),
                            **errors(*READ_ERRORS),
                        },
                        parameters=[
                            query_param("workflow", STRING),
                            query_param("status", {"enum": [s.value for s in WorkflowStatus]}),
                            query_param("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                        ],
                    )
                }
            }
        ),
        "/v1/workflow-runs/{id}": RouteDoc(
            paths={
                "/v1/workflow-runs/{id}": {
                    "get": operation(
                        "A workflow run and its steps",
                        {**run_answer, **errors(*READ_ERRORS)},
                        parameters=run,
                    )
                },
                "/v1/workflow-runs/{id}/approve": {
                    "post": operation(
                        "Approve (or reject) the approval step a run waits on",
                        {**run_answer, **errors(*WRITE_ERRORS)},
                        request_body=_optional_json(
                            "WorkflowApproveBody", {"approved": True, "comment": "ok"}
                        ),
                        parameters=run,
                    )
                },
                "/v1/workflow-runs/{id}/cancel": {
                    "post": operation(
                        "Cancel a workflow run",
                        {**run_answer, **errors(*READ_ERRORS, "409")},
                        parameters=run,
                    )
                },
            }
        ),
        "/hooks/workflows/{name}": RouteDoc(
            paths={
                "/hooks/workflows/{name}": {
                    "post": operation(
                        "Start a workflow run from a signed inbound webhook",
                        {
                            "202": response("The queued run.", json_content("WorkflowRun")),
                            **errors("400", "401", "403", "404", "409", "413", "429", "500"),
                        },
                        description="No API key: authenticated by the HMAC-SHA256 signature "
                        f"of the body in ``{SIGNATURE_HEADER}`` with the workflow's "
                        "``triggers.webhook_secret``; ``x-wayport-delivery`` deduplicates "
                        "retried deliveries.",
                        request_body={
                            "required": True,
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        parameters=[
                            path_param("name", "The workflow's name."),
                            header_param(SIGNATURE_HEADER, "``sha256=<hex HMAC of the body>``."),
                            header_param("x-wayport-delivery", "The delivery's id."),
                        ],
                    )
                }
            }
        ),
    }
